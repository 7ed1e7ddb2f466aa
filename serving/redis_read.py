"""The online read's Redis exchange: many `HGETALL`s out, their replies back, one round trip.

The read path is the hot path, so it skips redis-py's per-command machinery: the commands
are packed by hiredis and written at once, and the replies parsed by one hiredis reader
straight off the socket. Connections come from the client's pool once and then stay with
the reader (the pool's checkout costs a lock, a liveness probe and observability events).
A connection that fails is dropped with every idle one, and the read retried once on a
fresh pooled connection: reads are idempotent, and a failure usually means Redis restarted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import hiredis
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from serving import metrics

_pack: Any = hiredis.pack_command  # one command tuple → RESP bytes
READ_CHUNK = 1 << 17
_SECONDS = metrics.REDIS_SECONDS.labels("online_read")


class OnlineReader:
    """Reads entity hashes for the online endpoints on connections of `redis`'s pool."""

    def __init__(self, redis: Redis) -> None:
        self._pool = redis.connection_pool
        self._idle: list[Any] = []

    async def hgetall(self, keys: Sequence[str]) -> list[Any]:
        """`HGETALL` of every key in one round trip: RESP2's flat `[field, value, ...]`
        replies, in key order (`[]` for a missing key)."""
        started = time.perf_counter()
        payload = b"".join([_pack(("HGETALL", key)) for key in keys])
        try:
            replies = await self._exchange(payload, len(keys))
        except (RedisConnectionError, OSError):
            await self._drop_idle()
            replies = await self._exchange(payload, len(keys))
        _SECONDS.observe(time.perf_counter() - started)
        return replies

    async def _exchange(self, payload: bytes, count: int) -> list[Any]:
        if self._idle:
            conn = self._idle.pop()
        else:
            conn = await self._pool.get_connection()
        try:
            replies = await _round_trip(conn, payload, count)
        except BaseException:
            # Unread replies would poison the connection for the next user: drop it.
            await conn.disconnect()
            await self._pool.release(conn)
            raise
        self._idle.append(conn)
        return replies

    async def _drop_idle(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.disconnect()
            await self._pool.release(conn)

    async def close(self) -> None:
        """Give the connections back to the pool (which the caller then closes)."""
        idle, self._idle = self._idle, []
        for conn in idle:
            await self._pool.release(conn)


async def _round_trip(conn: Any, payload: bytes, count: int) -> list[Any]:
    """Send `payload` and parse `count` replies, under the connection's socket timeout."""
    # The connection's asyncio streams: redis-py has no public accessor for them.
    reader, writer = conn._reader, conn._writer
    if reader is None or writer is None:
        await conn.connect()
        reader, writer = conn._reader, conn._writer
    parser = hiredis.Reader()
    replies: list[Any] = []
    try:
        async with asyncio.timeout(conn.socket_timeout):
            writer.write(payload)
            await writer.drain()
            while len(replies) < count:
                data = await reader.read(READ_CHUNK)
                if not data:
                    msg = "Redis closed the connection"
                    raise RedisConnectionError(msg)
                parser.feed(data)
                reply = parser.gets()
                while reply is not False:
                    replies.append(reply)
                    reply = parser.gets()
    except TimeoutError:
        msg = f"Redis did not answer within {conn.socket_timeout} s"
        raise RedisTimeoutError(msg) from None
    for reply in replies:
        if isinstance(reply, hiredis.ReplyError):
            raise ResponseError(str(reply))
    return replies
