"""Prepared statements for the hot paths (recording a cost, checking a budget).

Django's PostgreSQL cursors bind parameters on the client (the values are spliced into the SQL
text), so PostgreSQL parses and plans every statement anew; for the recording statement that was
half of the database's work per request. `prepared_fetchall()` runs a statement on a Django cursor
(query logging, execute wrappers and error translation as usual) on the same connection and
transaction, with server-side binding, prepared: psycopg keeps the prepared statements per
connection (its `prepared_max` most recent), so a statement of constant text is parsed and planned
once per connection. Only statements written for it go through it: the ORM's SQL is not meant to be
prepared (Django ticket #20516). Elsewhere (SQLite) it runs on the ordinary cursor.

The statements are written with Django's `%s` / `%(name)s` placeholders and converted once to
PostgreSQL's native `$1…$n` (psycopg's raw query): psycopg would otherwise re-parse the text on
every execution, as its parse cache skips statements longer than 4 kB, which the recording one is.

Behind a transaction-mode connection pooler that does not track prepared statements, set
`DATABASE_PREPARED_STATEMENTS=false`: the same statements then run unprepared.
"""

from __future__ import annotations

import re
from functools import cache

from django.db import DEFAULT_DB_ALIAS, connections

_PLACEHOLDER = re.compile(r"%%|%\((\w+)\)s|%s")


class NativeStatement:
    """`sql` with its placeholders numbered for PostgreSQL; a name used twice is one parameter."""

    def __init__(self, sql: str):
        self.names: list[str | None] = []  # a name, or None for each positional %s

        def number(match: re.Match) -> str:
            if match.group(0) == "%%":
                return "%"
            name = match.group(1)
            if name is None or name not in self.names:
                self.names.append(name)
                return f"${len(self.names)}"
            return f"${self.names.index(name) + 1}"

        # Bytes, the same object every time: psycopg neither encodes it again nor re-hashes it to
        # find its prepared statement.
        self.text = _PLACEHOLDER.sub(number, sql).encode()

    def bind(self, params) -> list:
        if isinstance(params, dict):
            return [params[name] for name in self.names]
        return list(params)


@cache
def _native(sql: str) -> NativeStatement:
    return NativeStatement(sql)


@cache
def _prepared_cursor_classes():
    from django.db.backends.postgresql.base import CursorDebugWrapper, ServerBindingCursor
    from psycopg.raw_cursor import RawCursorMixin

    class PreparedCursor(RawCursorMixin, ServerBindingCursor):
        def execute(self, query, params=None, *, prepare=True, binary=None):
            # Without a prepare_threshold on the connection (DATABASE_PREPARED_STATEMENTS off) psycopg never prepares.
            return super().execute(query, params, prepare=prepare, binary=binary)

    class PreparedDebugCursor(CursorDebugWrapper):
        """Logs the statement as sent, with its parameters (`args=`): Django's rendering of the
        executed query expects client-side placeholders."""

        def debug_sql(self, sql=None, params=None, use_last_executed_query=False, many=False):
            return super().debug_sql(sql.decode() if isinstance(sql, bytes) else sql, params, False, many)

    return PreparedCursor, PreparedDebugCursor


def _prepared_cursor(db):
    db.close_if_health_check_failed()
    db.ensure_connection()
    db.validate_thread_sharing()
    cursor_class, debug_class = _prepared_cursor_classes()
    with db.wrap_database_errors:
        raw = cursor_class(db.connection)
    return debug_class(raw, db) if db.queries_logged else db.make_cursor(raw)


def prepared_fetchall(sql: str, params) -> list[tuple]:
    """Run `sql` (constant text, `%s` or `%(name)s` placeholders) prepared on PostgreSQL and return its rows."""
    db = connections[DEFAULT_DB_ALIAS]
    if db.vendor != "postgresql":
        with db.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()
    statement = _native(sql)
    with _prepared_cursor(db) as cursor:
        cursor.execute(statement.text, statement.bind(params))
        return cursor.fetchall()
