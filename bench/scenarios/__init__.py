"""Benchmark scenarios: each module exposes `run(ctx) -> list[tuple[str, str]]` (label, figure).

`ctx` (bench.harness.BenchContext) gives base_url, headers (an admin API key), size (usage records
loaded), measure(...) to time N requests (p50/p99/rps), healthz (the ceiling measured at this size)
and store (a dict kept across sizes, for comparing 1M with 10k).
"""
