"""Outbound HTTP for Slack and webhook channels, safe against server-side request forgery.

A URL must be http(s) and its host must resolve only to public addresses (no loopback, link-local,
private, shared, multicast or cloud-metadata address) unless settings.ALERTS_ALLOW_PRIVATE_URLS.
The request then connects to the very address that was vetted (the host name still goes into the
Host header and TLS SNI/certificate check), so a DNS answer that changes between the check and
the connection cannot redirect it. Redirects are never followed.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

from django.conf import settings
from django.utils import timezone

MAX_RESPONSE_BYTES = 64 * 1024


class UnsafeDestination(ValueError):
    """The URL's scheme or address is not allowed for outbound alerts."""


@dataclass
class HttpAnswer:
    status: int
    headers: dict[str, str]
    body: bytes
    elapsed_ms: int


@dataclass
class Destination:
    scheme: str
    host: str
    port: int
    target: str  # path and query
    addresses: list[str]


def _forbidden(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    elif ip.version == 6 and ip.sixtofour and _forbidden(str(ip.sixtofour)):
        return True  # 2002:a9fe:a9fe::/48 is the 6to4 form of 169.254.169.254: judge the IPv4 it carries
    return (not ip.is_global or ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast
            or ip.is_reserved or ip.is_unspecified)


def private_urls_allowed() -> bool:
    return bool(getattr(settings, "ALERTS_ALLOW_PRIVATE_URLS", False))


def url_check_syntax(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url or "")
    if parts.scheme not in ("http", "https"):
        raise UnsafeDestination("Only http:// and https:// URLs are allowed.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UnsafeDestination("The URL's port is not valid.") from None
    if not parts.hostname:
        raise UnsafeDestination("The URL has no host.")
    if parts.username or parts.password:
        raise UnsafeDestination("Credentials in the URL are not allowed.")
    return parts.scheme, parts.hostname, port


def destination_resolve(url: str, *, allow_private: bool | None = None) -> Destination:
    """Parse and resolve `url`; UnsafeDestination if any address it resolves to is not public."""
    allow_private = private_urls_allowed() if allow_private is None else allow_private
    scheme, host, port = url_check_syntax(url)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise OSError(f"Cannot resolve {host}: {exc.strerror or exc}") from exc
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not allow_private:
        for address in addresses:
            if _forbidden(address):
                raise UnsafeDestination(
                    f"{host} resolves to {address}, a loopback, private, link-local or metadata address; "
                    "alerts are only sent to public addresses (see ALERTS_ALLOW_PRIVATE_URLS).")
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Destination(scheme, host, port, target, addresses)


def url_validate_for_saving(url: str) -> None:
    """Refuse unsafe URLs when a channel is saved (resolution is skipped when private URLs are allowed)."""
    url_check_syntax(url)
    if private_urls_allowed():
        return
    try:
        destination_resolve(url, allow_private=False)
    except OSError as exc:
        raise UnsafeDestination(str(exc)) from exc


def _connect(destination: Destination, timeout: float) -> http.client.HTTPConnection:
    last_error: OSError | None = None
    for address in destination.addresses:
        try:
            sock = socket.create_connection((address, destination.port), timeout=timeout)
        except OSError as exc:
            last_error = exc
            continue
        if destination.scheme == "https":
            context = ssl.create_default_context()
            try:
                sock = context.wrap_socket(sock, server_hostname=destination.host)
            except OSError:
                sock.close()
                raise
            connection = http.client.HTTPSConnection(destination.host, destination.port, timeout=timeout)
        else:
            connection = http.client.HTTPConnection(destination.host, destination.port, timeout=timeout)
        connection.sock = sock  # already connected to the vetted address
        return connection
    raise last_error or OSError(f"No address for {destination.host}")


def post_json(url: str, body: bytes, *, headers: dict[str, str] | None = None, timeout: float) -> HttpAnswer:
    """POST `body` as JSON; raises UnsafeDestination, TimeoutError or another OSError."""
    started = time.monotonic()
    destination = destination_resolve(url)
    connection = _connect(destination, timeout)
    try:
        all_headers = {"Content-Type": "application/json", "User-Agent": "CostMonitor-Alerts/1.0",
                       **(headers or {})}
        connection.request("POST", destination.target, body=body, headers=all_headers)
        response = connection.getresponse()
        data = response.read(MAX_RESPONSE_BYTES)
        answer_headers = {k.lower(): v for k, v in response.getheaders()}
    finally:
        connection.close()
    return HttpAnswer(response.status, answer_headers, data, int((time.monotonic() - started) * 1000))


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds (it may be a number of seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - timezone.now()).total_seconds())
