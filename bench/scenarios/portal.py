"""The portal's figures: overview page latency (a logged-in session, server-side charts) for an
admin (all teams) and a researcher (their teams), and the SQL statements one overview makes."""

from __future__ import annotations

import http.client
import re
from http.cookies import SimpleCookie
from urllib.parse import urlencode, urlsplit

TARGET_MS = 150.0
PASSWORD = "bench-portal-Password-1"  # noqa: S105 - a throwaway user in the bench database


def _portal_user(username: str, role: str, team: str):
    from budgets import accounts

    return accounts.user_provision(username=username, role=role, team_name=team, password=PASSWORD)


def _session_cookie(base_url: str, username: str) -> str:
    """Log in through /accounts/login/ like a browser: GET the form (CSRF cookie + token), POST it."""
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    connection.request("GET", "/accounts/login/")
    answer = connection.getresponse()
    page = answer.read().decode()
    cookies = SimpleCookie()
    for header, value in answer.getheaders():
        if header.lower() == "set-cookie":
            cookies.load(value)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    body = urlencode({"username": username, "password": PASSWORD, "csrfmiddlewaretoken": token, "next": "/"})
    connection.request("POST", "/accounts/login/", body=body, headers={
        "Content-Type": "application/x-www-form-urlencoded", "Cookie": f"csrftoken={cookies['csrftoken'].value}",
        "Referer": f"{base_url}/accounts/login/"})
    answer = connection.getresponse()
    answer.read()
    for header, value in answer.getheaders():
        if header.lower() == "set-cookie":
            cookies.load(value)
    connection.close()
    if answer.status != 302 or "sessionid" not in cookies:
        raise RuntimeError(f"portal login failed for {username}: HTTP {answer.status}")
    return f"sessionid={cookies['sessionid'].value}; csrftoken={cookies['csrftoken'].value}"


def _queries_per_overview(user) -> int:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    client.force_login(user)
    client.get("/")
    with CaptureQueriesContext(connection) as queries:
        answer = client.get("/", SERVER_NAME="127.0.0.1")
    assert answer.status_code == 200, answer.status_code
    return len(queries)


def run(ctx) -> list[tuple[str, str]]:
    admin = _portal_user("bench-portal-admin", "admin", "Bench Lab")
    researcher = _portal_user("bench-portal-researcher", "researcher", "Proteomics")
    lines, figures = [], {}
    for label, user in (("admin", admin), ("researcher", researcher)):
        cookie = _session_cookie(ctx.base_url, user.username)
        overview = ctx.measure("GET", "/", n=300, concurrency=1, warmup=20, ok=(200,),
                               headers={"Cookie": cookie, "Authorization": "", "Content-Type": "text/html"})
        figures[label] = overview.p50
        failed = f"   ERRORS {overview.statuses}" if overview.errors else ""
        lines.append((f"portal overview p50 / p99 ({label}, 1 client)",
                      f"{overview.p50:8.2f} ms / {overview.p99:.2f} ms   ({ctx.ratio_latency(overview.p50)}){failed}"))
    usage = ctx.measure("GET", "/usage/", n=100, concurrency=1, warmup=5, ok=(200,),
                        headers={"Cookie": _session_cookie(ctx.base_url, admin.username), "Authorization": ""})
    lines.append(("portal usage explorer p50 (admin, page 1)", f"{usage.p50:8.2f} ms"))
    try:
        lines.append(("portal overview SQL statements (admin)", f"{_queries_per_overview(admin):8d}"))
    except Exception as exc:  # the in-process count is a diagnostic; never hide the timings for it
        lines.append(("portal overview SQL statements", f"n/a ({exc!r})"))
    ctx.store.setdefault("portal", {})[ctx.size] = figures
    return lines


def summary(store) -> list[tuple[str, str]]:
    lines = []
    for size, figures in sorted(store.get("portal", {}).items()):
        for label, p50 in figures.items():
            verdict = "meets" if p50 < TARGET_MS else "MISSES"
            lines.append((f"overview p50 at {size:,} records ({label})",
                          f"{p50:8.2f} ms   {verdict} the {TARGET_MS:.0f} ms target"))
    return lines
