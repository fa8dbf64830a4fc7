"""The benchmark's load generator and the context handed to every scenario.

Plain http.client connections with keep-alive, one per client thread: it needs nothing beyond the
standard library and spends little CPU per request, which matters on a 2-core machine where the
generator and the server share the cores (every figure is also given as a ratio to /healthz,
measured the same way on the same server, so the generator's own cost cancels out).
"""

from __future__ import annotations

import http.client
import json
import statistics
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class Measurement:
    requests: int
    seconds: float
    latencies_ms: list[float]
    statuses: dict[int, int]
    errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies_ms) if self.latencies_ms else 0.0

    @property
    def p99(self) -> float:
        if not self.latencies_ms:
            return 0.0
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def _client_loop(host, port, method, path, bodies, headers, count, ok, out, barrier):
    connection = http.client.HTTPConnection(host, port, timeout=60)
    latencies, statuses, errors = [], {}, 0
    barrier.wait()
    for i in range(count):
        body = bodies[i % len(bodies)] if bodies else None
        started = time.perf_counter()
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            status = response.status
        except (OSError, http.client.HTTPException):
            connection.close()
            connection = http.client.HTTPConnection(host, port, timeout=60)
            status = 0
        latencies.append((time.perf_counter() - started) * 1000)
        statuses[status] = statuses.get(status, 0) + 1
        if status not in ok:
            errors += 1
    connection.close()
    out.append((latencies, statuses, errors))


@dataclass
class BenchContext:
    base_url: str
    headers: dict
    size: int
    store: dict = field(default_factory=dict)
    healthz: Measurement | None = None

    def measure(self, method: str, path: str, *, body=None, bodies=None, n: int = 1000, concurrency: int = 8,
                headers: dict | None = None, ok=(200, 201), warmup: int = 50) -> Measurement:
        """Send n requests from `concurrency` keep-alive clients; bodies (dicts) are JSON-encoded and
        sent round-robin. Returns latencies, statuses and requests per second."""
        parts = urlsplit(self.base_url)
        sent_headers = {"Content-Type": "application/json", **self.headers, **(headers or {})}
        encoded = [json.dumps(b).encode() for b in (bodies or ([body] if body is not None else []))]
        if warmup:
            self._run(parts, method, path, encoded, sent_headers, min(warmup, n), min(concurrency, 4), ok)
        return self._run(parts, method, path, encoded, sent_headers, n, concurrency, ok)

    def _run(self, parts, method, path, bodies, headers, n, concurrency, ok) -> Measurement:
        out: list = []
        barrier = threading.Barrier(concurrency + 1)
        share = [n // concurrency + (1 if i < n % concurrency else 0) for i in range(concurrency)]
        threads = [threading.Thread(target=_client_loop, args=(parts.hostname, parts.port, method, path, bodies,
                                                               headers, count, ok, out, barrier))
                   for count in share]
        for thread in threads:
            thread.start()
        barrier.wait()
        started = time.perf_counter()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - started
        latencies, statuses, errors = [], {}, 0
        for lat, sts, err in out:
            latencies += lat
            errors += err
            for status, count in sts.items():
                statuses[status] = statuses.get(status, 0) + count
        return Measurement(n, seconds, latencies, statuses, errors)

    def ratio_latency(self, ms: float) -> str:
        return f"{ms / self.healthz.p50:.1f}x /healthz p50" if self.healthz and self.healthz.p50 else "n/a"
