"""Prepared statements for the hot paths (recording a cost, checking a budget).

Django's PostgreSQL cursors bind parameters on the client (the values are spliced into the SQL
text), so PostgreSQL parses and plans every statement anew; for the recording statement that was
half of the database's work per request. `prepared_cursor()` gives a Django cursor (query logging,
execute wrappers and error translation as usual) on the same connection and transaction whose
statements use server-side binding and are prepared: psycopg keeps the prepared statements per
connection (its `prepared_max` most recent), so a statement of constant text is parsed and planned
once per connection. Only statements written for it go through it: the ORM's SQL is not meant to be
prepared (Django ticket #20516). Elsewhere (SQLite) it is the ordinary cursor.

Behind a transaction-mode connection pooler that does not track prepared statements, set
`DATABASE_PREPARED_STATEMENTS=false`: the same statements then run unprepared.
"""

from __future__ import annotations

from functools import cache

from django.db import connection


@cache
def _prepared_cursor_classes():
    from django.db.backends.postgresql.base import CursorDebugWrapper, ServerBindingCursor

    class PreparedCursor(ServerBindingCursor):
        def execute(self, query, params=None, *, prepare=True, binary=None):
            # Without a prepare_threshold on the connection (DATABASE_PREPARED_STATEMENTS off) psycopg never prepares.
            return super().execute(query, params, prepare=prepare, binary=binary)

    class PreparedDebugCursor(CursorDebugWrapper):
        """Logs the statement with its values spliced in: a prepared execution leaves psycopg no query text."""

        def debug_sql(self, sql=None, params=None, use_last_executed_query=False, many=False):
            if use_last_executed_query and not many:
                sql, use_last_executed_query = self.db.ops.compose_sql(sql, params), False
            return super().debug_sql(sql, params, use_last_executed_query, many)

    return PreparedCursor, PreparedDebugCursor


def prepared_cursor():
    """A cursor whose statements are prepared (PostgreSQL); use as `with prepared_cursor() as cursor:`."""
    if connection.vendor != "postgresql":
        return connection.cursor()
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    connection.validate_thread_sharing()
    cursor_class, debug_class = _prepared_cursor_classes()
    with connection.wrap_database_errors:
        raw = cursor_class(connection.connection)
    return debug_class(raw, connection) if connection.queries_logged else connection.make_cursor(raw)
