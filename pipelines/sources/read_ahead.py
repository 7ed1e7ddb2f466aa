"""One Redis command sent ahead of need on a connection of its own, its reply read later.

The stream source sends the `XREAD` of its next batch as soon as it has emitted one: Redis
builds the reply while the flow works on the batch, and the next call finds it waiting in
the socket instead of waiting for it. No thread is involved (a thread's reply parsing
would hold the GIL in the middle of the flow's work): the reply is read, and parsed by
hiredis, on the caller's thread when it asks for it.

>>> import redis
>>> ahead = ReadAhead(redis.Redis())  # no connection is made until a command is sent
>>> ahead.take(("PING",)) is MISSED
True
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipelines.sinks.redis_bulk import pack_one, raise_errors, read_replies

if TYPE_CHECKING:
    import redis

MISSED = object()  # what `take` returns when no reply to that very command is waiting


class ReadAhead:
    """At most one command in flight on a connection taken from the client's pool."""

    def __init__(self, client: redis.Redis) -> None:
        self.pool = client.connection_pool
        self.conn: Any = None
        self.sent: tuple[Any, ...] | None = None  # the command whose reply is pending

    def send(self, command: tuple[Any, ...]) -> None:
        """Send `command` now; its reply waits for `take`. One in flight at a time: a reply
        still pending is read and dropped first."""
        if self.sent is not None:
            self.take(())
        if self.conn is None:
            self.conn = self.pool.get_connection()
        try:
            self.conn.send_packed_command([pack_one(command)], check_health=False)
        except BaseException:
            self._drop()
            raise
        self.sent = command

    def take(self, command: tuple[Any, ...]) -> Any:
        """The reply to `command` if it is the one sent ahead, else `MISSED` (a reply to
        another command is read and dropped, so the connection stays in step)."""
        sent, self.sent = self.sent, None
        if sent is None:
            return MISSED
        try:
            (reply,) = read_replies(self.conn, 1)
        except BaseException:
            self._drop()
            raise
        if sent != command:
            return MISSED
        raise_errors([reply], f"{sent[0]} command(s)")
        return reply

    def close(self) -> None:
        """Give the connection back; one with a reply still pending is disconnected first."""
        if self.sent is not None:
            self._drop()
        elif self.conn is not None:
            conn, self.conn = self.conn, None
            self.pool.release(conn)

    def _drop(self) -> None:
        """Disconnect and give back the connection (its stream of replies is unknown)."""
        conn, self.conn, self.sent = self.conn, None, None
        if conn is not None:
            conn.disconnect()
            self.pool.release(conn)
