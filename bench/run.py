"""`make bench`: the ledger at 10k and 1M usage records on PostgreSQL, measured over HTTP against gunicorn.

Builds a fresh database (BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/costmonitor_bench),
loads usage records with COPY, derives counters and rollups with the rebuild_counters logic, starts
`gunicorn -w 4 -k gthread --threads 4` (settings bench.settings: the project's plus the reference route of
bench/reference.py), then for each size measures /healthz (the ceiling) and runs
every module in bench/scenarios/ (`run(ctx) -> [(label, figure)]`). Outside the test suite.

    .venv/bin/python bench/run.py [--sizes 10000,1000000] [--only ledger,dashboards] [--keep]
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/costmonitor_bench")
SERVER_ENV = {
    "DATABASE_URL": DATABASE_URL,
    "DEBUG": "false",
    "SECRET_KEY": "bench-secret-key-not-for-production-0123456789abcdef",
    "ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
    "CACHE_URL": os.environ.get("BENCH_CACHE_URL", "redis://127.0.0.1:6379/3"),
    "SECURE_SSL_REDIRECT": "false",
    "SESSION_COOKIE_SECURE": "false",
    "CSRF_COOKIE_SECURE": "false",
    "RATE_LIMIT_DASHBOARD": "none",
    "RATE_LIMIT_BUDGET_CHECKS": "none",
    "RATE_LIMIT_ALERTS": "none",
    "RATE_LIMIT_TRACKING": "none",
    "RATE_LIMIT_AUTH_FAILURES": "none",
    "LOG_LEVEL": "WARNING",
}
os.environ.update(SERVER_ENV)
os.environ["DJANGO_SETTINGS_MODULE"] = "costmonitor.settings"

MODELS = [("gpt-4o-mini", 0.6, Decimal("0.00000015"), Decimal("0.0000006")),
          ("gpt-4o", 0.25, Decimal("0.0000025"), Decimal("0.00001")),
          ("claude-3-5-sonnet-20241022", 0.15, Decimal("0.000003"), Decimal("0.000015"))]
CATEGORIES = ["metabolite_identification", "pathway_analysis", "literature_search", "data_validation"]
OPERATIONS = ["llm_call", "embedding_call"]
HISTORY_DAYS = 90
COLUMNS = ["user_id", "team_id", "api_key_id", "kind", "operation_name", "operation_type", "model_name",
           "research_category", "experiment", "run_id", "prompt_tokens", "completion_tokens", "total_tokens",
           "cost_usd", "price_source", "price_version", "response_time_ms", "request_size", "response_size",
           "success", "error_type", "error_message", "batch_size", "success_count", "error_count", "metadata",
           "occurred_at", "recorded_at", "operation_id"]


def say(text: str) -> None:
    print(text, flush=True)


def fresh_database() -> None:
    import psycopg

    base, _, name = DATABASE_URL.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')


def setup_django():
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    # Before gunicorn starts: with DEBUG off, WhiteNoise indexes the static files once at start-up
    # and {% static %} needs the manifest collectstatic writes.
    call_command("collectstatic", interactive=False, verbosity=0)
    import redis

    redis.Redis.from_url(SERVER_ENV["CACHE_URL"]).flushdb()


def create_people():
    """Three teams, an admin (whose key the scenarios use) and researchers; generous budgets of every scope."""
    from budgets import accounts
    from budgets.models import Budget

    admin = accounts.user_provision(username="bench-admin", role="admin", team_name="Bench Lab")
    users = [admin]
    for index, team in enumerate(["Bench Lab", "Proteomics", "Genomics"] * 2):
        users.append(accounts.user_provision(username=f"bench-r{index}", role="researcher", team_name=team))
    api_key, raw_key = accounts.api_key_create(user=admin, name="bench")
    team = admin.teams.get()
    big = Decimal("1000000000")
    Budget.objects.filter(is_global_default=True).update(limit_usd=big)
    Budget.objects.create(name="Bench Lab daily", scope="team", team=team, period="daily", limit_usd=big)
    Budget.objects.create(name="Metabolite ID monthly", scope="category", research_category=CATEGORIES[0],
                          period="monthly", limit_usd=big)
    Budget.objects.create(name="gpt-4o daily (soft)", scope="model", model_name="gpt-4o", period="daily",
                          limit_usd=big, enforcement="soft")
    Budget.objects.create(name="Admin monthly", scope="user", user=admin, period="monthly", limit_usd=big)
    # The history predates the budgets: let them count it, as if they had existed all along.
    from django.utils import timezone

    Budget.objects.update(created_at=timezone.now() - timedelta(days=HISTORY_DAYS + 60))
    memberships = [(u.pk, u.teams.values_list("pk", flat=True)[0]) for u in users]
    return raw_key, memberships, api_key.pk


def copy_records(count: int, memberships, api_key_id: int, rng: random.Random) -> None:
    """COPY `count` plausible usage records spread over the last HISTORY_DAYS days (daytime-heavy)."""
    from django.db import connection
    from django.utils import timezone

    now = timezone.now() - timedelta(minutes=1)
    span = HISTORY_DAYS * 86400
    hour_weights = [1, 1, 1, 1, 1, 1, 2, 4, 8, 12, 13, 12, 7, 10, 12, 12, 10, 7, 4, 3, 2, 2, 1, 1]
    model_weights = [m[1] for m in MODELS]
    sql = f"COPY tracking_usagerecord ({', '.join(COLUMNS)}) FROM STDIN"
    with connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
        for _ in range(count):
            user_id, team_id = memberships[rng.randrange(len(memberships))]
            model, _, price_in, price_out = rng.choices(MODELS, weights=model_weights)[0]
            day_start = (now - timedelta(seconds=rng.randrange(span))).replace(hour=0, minute=0, second=0)
            occurred = day_start + timedelta(hours=rng.choices(range(24), weights=hour_weights)[0],
                                             seconds=rng.randrange(3600))
            occurred = min(occurred, now)
            prompt, completion = rng.randint(100, 8000), rng.randint(10, 1500)
            failed = rng.random() < 0.03
            cost = (prompt * price_in + completion * price_out).quantize(Decimal("0.000001"))
            copy.write_row((
                user_id, team_id, api_key_id if user_id == memberships[0][0] else None, "call",
                "bench_call", OPERATIONS[rng.random() < 0.2], model, rng.choice(CATEGORIES),
                f"exp-{rng.randint(1, 20)}", "", prompt, completion, prompt + completion, cost, "client", "",
                Decimal(rng.randint(200, 4000)), prompt * 4, completion * 4, not failed,
                "Timeout" if failed else "", "", None, None, None, "{}", occurred, occurred, None))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE tracking_usagerecord")


def derive_ledger() -> str:
    from tracking.rebuild import ledger_rebuild

    started = time.perf_counter()
    report = ledger_rebuild(write=True)
    return (f"counters and rollups rebuilt in {time.perf_counter() - started:.1f} s "
            f"({report.counters_checked} counters, {report.rollups_actual} rollup rows)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(port: int) -> subprocess.Popen:
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    server = subprocess.Popen(
        [gunicorn, "costmonitor.wsgi", "-w", "4", "-k", "gthread", "--threads", "4", "-b", f"127.0.0.1:{port}",
         "--log-level", "warning"],
        cwd=ROOT, env={**os.environ, **SERVER_ENV, "DJANGO_SETTINGS_MODULE": "bench.settings"},
        start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
                if answer.status == 200:
                    return server
        except OSError:
            time.sleep(0.3)
    server.terminate()
    raise SystemExit("gunicorn did not answer /healthz within 60 s")


def scenario_modules(only: set[str] | None):
    import bench.scenarios as package

    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if only and info.name not in only:
            continue
        yield info.name, importlib.import_module(f"bench.scenarios.{info.name}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=os.environ.get("BENCH_SIZES", "10000,1000000"))
    parser.add_argument("--only", default="", help="comma-separated scenario module names")
    parser.add_argument("--keep", action="store_true", help="leave gunicorn running at the end (prints its pid)")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(",") if s.strip())
    only = {s.strip() for s in args.only.split(",") if s.strip()} or None

    from bench.harness import BenchContext

    say(f"Fresh database {DATABASE_URL.rpartition('/')[2]} …")
    fresh_database()
    setup_django()
    raw_key, memberships, api_key_id = create_people()
    rng = random.Random(1234)
    port = free_port()
    server = None
    store: dict = {}
    loaded = 0
    try:
        for size in sizes:
            started = time.perf_counter()
            copy_records(size - loaded, memberships, api_key_id, rng)
            loaded = size
            seconds = time.perf_counter() - started
            say(f"\nLoaded {size:,} usage records with COPY in {seconds:.1f} s; {derive_ledger()}")
            if server is None:
                server = start_server(port)
            ctx = BenchContext(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {raw_key}"},
                               size=size, store=store)
            ctx.healthz = ctx.measure("GET", "/healthz", n=6000, concurrency=8, headers={"Authorization": ""},
                                      warmup=200)
            say(f"== {size:,} usage records (gunicorn -w 4 -k gthread --threads 4, 8 keep-alive clients; "
                f"load average {os.getloadavg()[0]:.1f}) ==")
            say(f"  {'/healthz':<46} {ctx.healthz.rps:8.0f} req/s   p50 {ctx.healthz.p50:.2f} ms")
            for name, module in scenario_modules(only):
                try:
                    lines = module.run(ctx)
                except Exception as exc:  # one broken scenario must not hide the others' figures
                    lines = [(f"{name}: FAILED", repr(exc))]
                for label, figure in lines:
                    say(f"  {label:<46} {figure}")
        for name, module in scenario_modules(only):
            summary = getattr(module, "summary", None)
            if summary:
                say(f"\n== {name}: targets ==")
                for label, figure in summary(store):
                    say(f"  {label:<46} {figure}")
    finally:
        if server is not None and not args.keep:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
        elif server is not None:
            say(f"gunicorn still running: pid {server.pid}, http://127.0.0.1:{port}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
