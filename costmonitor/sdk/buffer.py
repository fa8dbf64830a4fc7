"""The outbox: records that could not be sent wait in a bounded SQLite file and are resent later.

Each entry keeps the request exactly as first built, with its idempotency key, so a resend after an
answer that was lost on the way is counted once by the server. When the file holds `max_records`
entries the oldest are dropped, logged and counted (`dropped`). SQLite does the locking, so several
threads or processes may share one file; entries are tagged with the server and key they belong to
(`target`) and only that client resends them.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger("costmonitor.sdk")

DEFAULT_MAX_RECORDS = 10_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    target TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    body TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX IF NOT EXISTS outbox_key ON outbox (target, idempotency_key);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


def default_state_dir() -> Path:
    """Where the SDK keeps state by default: the platform's per-user state/data directory."""
    if sys.platform.startswith("win"):
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "costmonitor"


def default_buffer_path() -> Path:
    return Path(os.environ.get("COSTMONITOR_BUFFER_PATH") or default_state_dir() / "outbox.sqlite3")


@dataclass(frozen=True)
class OutboxEntry:
    id: int
    method: str
    path: str
    body: Any
    idempotency_key: str
    created_at: float
    attempts: int


class Outbox:
    """A bounded, persistent FIFO of unsent requests for one target (server URL + API key)."""

    def __init__(self, path: str | os.PathLike | None = None, *, max_records: int = DEFAULT_MAX_RECORDS,
                 target: str = "default"):
        if max_records < 1:
            raise ValueError("max_records must be at least 1")
        self.path = Path(path) if path else default_buffer_path()
        self.max_records = max_records
        self.target = target
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self._connect() as conn:
            conn.executescript(_SCHEMA)
        try:
            os.chmod(self.path, 0o600)  # records name models, categories and experiments
        except OSError:
            pass

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        conn.execute("PRAGMA busy_timeout = 30000")
        return conn

    def add(self, *, method: str, path: str, body: Any, idempotency_key: str) -> bool:
        """Keep one request; False if the same key is already waiting. Drops the oldest when full."""
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                cur = conn.execute(
                    "INSERT OR IGNORE INTO outbox (target, method, path, body, idempotency_key, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (self.target, method, path, json.dumps(body), idempotency_key, time.time()))
                added = cur.rowcount == 1
                (count,) = conn.execute("SELECT COUNT(*) FROM outbox").fetchone()
                overflow = count - self.max_records
                if overflow > 0:
                    conn.execute("DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT ?)",
                                 (overflow,))
                    self._bump(conn, "dropped", overflow)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        finally:
            conn.close()
        if overflow > 0:
            logger.warning("CostMonitor outbox %s is full (%d records): dropped the %d oldest unsent record(s); "
                           "%d dropped so far.", self.path, self.max_records, overflow, self.dropped)
        return added

    @staticmethod
    def _bump(conn: sqlite3.Connection, name: str, by: int) -> None:
        conn.execute("INSERT INTO counters (name, value) VALUES (?, ?) "
                     "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value", (name, by))

    def _counter(self, name: str) -> int:
        conn = self._connect()
        try:
            row = conn.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        finally:
            conn.close()
        return int(row[0]) if row else 0

    @property
    def dropped(self) -> int:
        """Records discarded because the outbox was full (since the file was created)."""
        return self._counter("dropped")

    @property
    def rejected(self) -> int:
        """Records the server refused for good on resend (invalid), logged and discarded."""
        return self._counter("rejected")

    def pending(self) -> int:
        conn = self._connect()
        try:
            (count,) = conn.execute("SELECT COUNT(*) FROM outbox WHERE target = ?", (self.target,)).fetchone()
        finally:
            conn.close()
        return int(count)

    def __len__(self) -> int:
        return self.pending()

    def peek(self, limit: int = 100) -> list[OutboxEntry]:
        conn = self._connect()
        try:
            rows = conn.execute(
                "SELECT id, method, path, body, idempotency_key, created_at, attempts FROM outbox "
                "WHERE target = ? ORDER BY id LIMIT ?", (self.target, limit)).fetchall()
        finally:
            conn.close()
        return [OutboxEntry(id=r[0], method=r[1], path=r[2], body=json.loads(r[3]), idempotency_key=r[4],
                            created_at=r[5], attempts=r[6]) for r in rows]

    def remove(self, entry_id: int, *, rejected: bool = False) -> None:
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            cur = conn.execute("DELETE FROM outbox WHERE id = ?", (entry_id,))
            if rejected and cur.rowcount:
                self._bump(conn, "rejected", 1)
            conn.execute("COMMIT")
        finally:
            conn.close()

    def note_failure(self, entry_id: int, error: str) -> None:
        conn = self._connect()
        try:
            conn.execute("UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE id = ?",
                         (error[:500], entry_id))
        finally:
            conn.close()


class BackgroundFlusher(threading.Thread):
    """Calls `flush()` every `interval` seconds while records wait, backing off up to `max_interval`
    while the server stays away. A daemon thread: it never keeps the pipeline's process alive."""

    def __init__(self, flush: Callable[[], bool], has_pending: Callable[[], bool], *, interval: float = 5.0,
                 max_interval: float = 60.0):
        super().__init__(name="costmonitor-outbox", daemon=True)
        self._flush = flush
        self._has_pending = has_pending
        self.interval = interval
        self.max_interval = max_interval
        self._wake = threading.Event()
        self._stopped = threading.Event()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()

    def run(self) -> None:
        delay = self.interval
        while not self._stopped.is_set():
            self._wake.wait(delay)
            self._wake.clear()
            if self._stopped.is_set():
                return
            try:
                if not self._has_pending():
                    delay = self.interval
                    continue
                delivered_all = self._flush()
            except Exception:  # the thread must survive anything: a bug here would lose records silently
                logger.exception("CostMonitor outbox flush failed")
                delivered_all = False
            delay = self.interval if delivered_all else min(delay * 2, self.max_interval)
