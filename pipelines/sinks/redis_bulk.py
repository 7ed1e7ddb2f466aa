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


def call_raw(client: redis.Redis, *command: Any) -> Any:
    """One command with its reply parsed by hiredis alone (nested lists of bytes, fast)."""
    import hiredis

    pool = client.connection_pool
    conn = pool.get_connection()
    try:
        conn.send_packed_command([_pack_one(command)], check_health=False)  # type: ignore[misc]
        reader = hiredis.Reader()
        sock = conn._sock
        while (reply := reader.gets()) is False:
            data = sock.recv(1 << 20)
            if not data:
                msg = f"Redis closed the connection during {command[0]}"
                raise StorageError(msg)
            reader.feed(data)
    except BaseException:
        conn.disconnect()
        raise
    finally:
        pool.release(conn)
    if isinstance(reply, hiredis.ReplyError):
        msg = f"Redis rejected {command[0]}: {reply}"
        raise StorageError(msg)
    return reply


def fetch_raw(client: redis.Redis, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
    """Replies of `commands` (one round trip), parsed by hiredis alone; raise on any error."""
    import hiredis

    if not commands:
        return []
    pool = client.connection_pool
    conn = pool.get_connection()
    replies: list[Any] = []
    try:
        conn.send_packed_command([b"".join(map(_pack_one, commands))], check_health=False)  # type: ignore[arg-type]
        reader = hiredis.Reader()
        sock = conn._sock
        while len(replies) < len(commands):
            reply = reader.gets()
            if reply is False:
                data = sock.recv(1 << 20)
                if not data:
                    msg = "Redis closed the connection while the pipeline was reading"
                    raise StorageError(msg)
                reader.feed(data)
                continue
            replies.append(reply)
    except BaseException:
        conn.disconnect()
        raise
    finally:
        pool.release(conn)
    for command, reply in zip(commands, replies, strict=True):
        if isinstance(reply, hiredis.ReplyError):
            msg = f"Redis rejected {command[0]}: {reply}"
            raise StorageError(msg)
    return replies


def send_packed(client: redis.Redis, packed: Sequence[bytes], count: int) -> None:
    """Send RESP-packed commands (`count` in all) in one round trip; raise on any error reply.

    Replies are parsed with a hiredis reader straight off the socket: the pipeline's
    writes are acknowledgements it does not need, so only errors are kept.
    """
    if not count:
        return
    if _pack_one is None:  # pragma: no cover - hiredis is a declared dependency
        msg = "the online writer needs hiredis (pip install 'redis[hiredis]')"
        raise StorageError(msg)
    import hiredis

    pool = client.connection_pool
    conn = pool.get_connection()
    errors: list[str] = []
    try:
        conn.send_packed_command([b"".join(packed)], check_health=False)
        reader = hiredis.Reader()
        sock = conn._sock  # replies are read here, not by redis-py's parser
        seen = 0
        while seen < count:
            reply = reader.gets()
            if reply is False:
                data = sock.recv(1 << 20)
                if not data:
                    msg = "Redis closed the connection while the pipeline was writing"
                    raise StorageError(msg)
                reader.feed(data)
                continue
            seen += 1
            if isinstance(reply, hiredis.ReplyError):
                errors.append(str(reply))
    except BaseException:
        conn.disconnect()
        raise
    finally:
        pool.release(conn)
    if errors:
        msg = f"Redis rejected {len(errors)} of {count} command(s); first: {errors[0]}"
        raise StorageError(msg)


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
