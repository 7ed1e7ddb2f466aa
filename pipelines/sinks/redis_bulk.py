"""One round trip for many raw Redis commands, without redis-py's per-command pipeline cost.

The pipeline's online writes are thousands of commands per batch; packing them with
hiredis and reading the replies on one pooled connection costs a fraction of a
`Pipeline`. Error replies are collected and raised after the whole batch is read, so the
connection stays in a clean state.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from features.errors import StorageError

if TYPE_CHECKING:
    import redis

CHUNK = 20_000

try:
    from hiredis import pack_command as _pack_one
except ImportError:  # pragma: no cover - hiredis is a declared dependency
    _pack_one = None


def pack(conn: Any, commands: Sequence[tuple[Any, ...]]) -> Any:
    """RESP for `commands` (hiredis's C packer when available)."""
    if _pack_one is None:
        return conn.pack_commands(commands)
    return [b"".join(map(_pack_one, commands))]


def execute_bulk(client: redis.Redis, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
    """Send `commands` pipelined (in chunks) and return their replies in order."""
    import redis as redis_lib

    pool = client.connection_pool
    conn = pool.get_connection()
    replies: list[Any] = []
    errors: list[str] = []
    try:
        for start in range(0, len(commands), CHUNK):
            chunk = commands[start : start + CHUNK]
            conn.send_packed_command(pack(conn, chunk), check_health=False)
            for command in chunk:
                try:
                    replies.append(conn.read_response())
                except redis_lib.ResponseError as exc:
                    replies.append(exc)
                    errors.append(f"{command[0]} {command[1] if len(command) > 1 else ''}: {exc}")
    except BaseException:
        conn.disconnect()
        raise
    finally:
        pool.release(conn)
    if errors:
        msg = f"Redis rejected {len(errors)} of {len(commands)} command(s); first: {errors[0]}"
        raise StorageError(msg)
    return replies
