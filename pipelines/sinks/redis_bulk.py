"""One round trip for many raw Redis commands, without redis-py's per-command pipeline cost.

The pipeline sends thousands of commands per batch. Packing them with hiredis and parsing
the replies with a hiredis reader straight off a pooled connection's socket costs a
fraction of a redis-py `Pipeline`, which builds and parses each command in Python. All
replies are always read, so the connection goes back to the pool in a clean state; on
any I/O failure it is disconnected instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import repeat
from typing import TYPE_CHECKING, Any

import hiredis

from features.errors import StorageError

if TYPE_CHECKING:
    import redis

pack_one: Any = hiredis.pack_command  # one command tuple → RESP bytes
_MORE = object()  # what the reader returns while a reply is incomplete


def _round_trip(
    client: redis.Redis,
    payload: bytes | memoryview,
    count: int,
    meanwhile: Callable[[], None] | None = None,
) -> list[Any]:
    """Send RESP `payload` holding `count` commands; return the `count` replies in order.
    `meanwhile` runs once the payload is sent, while Redis works on it."""
    pool = client.connection_pool
    conn = pool.get_connection()
    replies: list[Any] = []
    try:
        conn.send_packed_command([payload], check_health=False)
        if meanwhile is not None:
            meanwhile()
        replies = read_replies(conn, count)
    except BaseException:
        conn.disconnect()
        raise
    finally:
        pool.release(conn)
    return replies


def read_replies(conn: Any, count: int) -> list[Any]:
    """The next `count` replies on a redis-py connection's socket, parsed by hiredis here
    rather than by redis-py's parser (errors come back as `hiredis.ReplyError` values)."""
    reader = hiredis.Reader(notEnoughData=_MORE)
    sock: Any = conn._sock
    replies: list[Any] = []
    while len(replies) < count:
        data = sock.recv(1 << 20)
        if not data:
            msg = "Redis closed the connection in the middle of a reply"
            raise StorageError(msg)
        reader.feed(data)
        replies += iter(reader.gets, _MORE)  # every reply complete so far, at C speed
    return replies


def raise_errors(replies: Sequence[Any], what: str) -> None:
    """Raise `StorageError` naming the first error among `replies` (hiredis error values)."""
    if not any(map(isinstance, replies, repeat(hiredis.ReplyError))):  # C-level: the usual case
        return
    errors = [str(r) for r in replies if isinstance(r, hiredis.ReplyError)]
    msg = f"Redis rejected {len(errors)} of {len(replies)} {what}; first: {errors[0]}"
    raise StorageError(msg)


def call_raw(client: redis.Redis, *command: Any) -> Any:
    """One command's reply as hiredis parses it (nested lists / maps of bytes)."""
    replies = _round_trip(client, pack_one(command), 1)
    raise_errors(replies, f"{command[0]} command(s)")
    return replies[0]


def fetch_packed(
    client: redis.Redis,
    payload: bytes | memoryview,
    count: int,
    meanwhile: Callable[[], None] | None = None,
) -> list[Any]:
    """The replies of `count` commands already packed as RESP in `payload`, in one round trip
    (batches built column-wise skip packing command tuples one by one). `meanwhile` (work
    not needing the replies) runs while Redis works on the commands."""
    if not count:
        if meanwhile is not None:
            meanwhile()
        return []
    replies = _round_trip(client, payload, count, meanwhile)
    raise_errors(replies, "command(s)")
    return replies
