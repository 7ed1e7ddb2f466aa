"""The tile step's pipelined connection against a real Redis: order, counting, errors."""

from __future__ import annotations

import socket
import threading
import time

import hiredis
import numpy as np
import orjson
import pyarrow as pa
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from features import layout
from features.errors import StorageError
from features.json_columns import concat, grouped
from pipelines.sinks import redis_writer
from pipelines.sinks import tile_commands as cmd
from pipelines.sinks.redis_tiles import bulk, meta_head
from pipelines.sinks.redis_writer import TileConnection, _send_all


def _packed(commands: list[tuple[object, ...]]) -> list[bytes]:
    return [hiredis.pack_command(c) for c in commands]


def test_sends_without_waiting_and_drains_every_reply(redis_client: redis.Redis) -> None:
    conn = TileConnection(redis_client)
    # Enough replies to arrive in several reads; HSET and PEXPIREAT reply one line each.
    for batch in range(5):
        commands: list[tuple[object, ...]] = []
        for i in range(20_000):
            commands.append(("HSET", f"k{i}", "b", batch, "f", "x" * (i % 7)))
        commands.append(("PEXPIREAT", "k0", 4_102_444_800_000))
        conn.send(_packed(commands), len(commands))
    conn.drain()
    assert conn._unread == 0 and conn._buffer == b""
    assert redis_client.hget("k19999", "b") == b"4"  # the last batch won, in order
    assert redis_client.pexpiretime("k0") == 4_102_444_800_000


def test_a_rejected_write_is_raised_by_drain_and_the_connection_stays_usable(
    redis_client: redis.Redis,
) -> None:
    conn = TileConnection(redis_client)
    redis_client.set("plain", "x")
    commands: list[tuple[object, ...]] = [
        ("HSET", "h1", "a", 1),
        ("HSET", "plain", "a", 1),  # WRONGTYPE
        ("HSET", "h2", "a", 2),
    ]
    conn.send(_packed(commands), len(commands))
    with pytest.raises(StorageError, match=r"rejected 1 tile write.*WRONGTYPE"):
        conn.drain()
    assert redis_client.hget("h2", "a") == b"2"  # later writes were still applied
    conn.send(_packed([("HSET", "h3", "a", 3)]), 1)
    conn.drain()
    assert redis_client.hget("h3", "a") == b"3"


def test_redis_going_away_is_a_storage_error(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    conn = TileConnection(client)
    conn.send(_packed([("HSET", "h", "a", 1)]), 1)
    conn.drain()
    conn._conn._sock.close()  # the socket dies under the writer
    with pytest.raises((StorageError, OSError)):
        conn.send(_packed([("HSET", "h", "a", 2)]), 1)
        conn.drain()
    # a broken connection is dropped and the next write reconnects
    conn.send(_packed([("HSET", "h", "a", 3)]), 1)
    conn.drain()
    assert client.hget("h", "a") == b"3"


def test_column_built_tile_commands_are_the_commands_they_name(redis_client: redis.Redis) -> None:
    """The tile step frames DEL/HSET/PEXPIREAT a batch at a time; the rows' buffer must
    equal hiredis's packing of the same commands, in entity order, and Redis must run it."""
    keys = [layout.view_key("p", "v", u) for u in ("u1", "u2|x")]
    raw = pa.array([bulk(k.encode()) for k in keys], pa.binary())
    g, starts = 60_000_000, np.array([1_795_716_000_000_000, 1_795_716_060_000_000, 0])
    tiles = pa.array([b'{"n":1}', b'{"n":2,"s":1.5}', b'{"n":3}'], pa.binary())
    heads = pa.array([meta_head(["u1"], "ver"), meta_head(["u2|x"], "ver")], pa.binary())
    max_ts, folded = np.array([7, 1_795_716_070_000_000]), np.array([-5, 1_795_716_070_000_000])
    stream = pa.array([bulk(b"o:p0#1")] * 2, pa.binary())
    # Entity 0 holds the tile starting at starts[1], entity 1 those at starts[0] and 0.
    tiles_in_order = cmd.tile_field_pieces(g, starts[[1, 0, 2]], [tiles.take([1, 0, 2])])
    groups = [
        grouped(concat(*tiles_in_order), np.array([1, 2])),
        *cmd.mark_field_pieces(stream, np.array([1, 3]), np.array([2, 0])),
        *cmd.meta_pieces(heads, max_ts, folded),
    ]
    expiries = (np.array([0, 1]), np.array([4_102_444_800_000, 4_102_444_801_000]))
    rows = cmd.entity_rows(raw, np.array([3, 4]), [(None, groups)], np.array([1]), expiries)
    meta = [
        b'{"keys":["u1"],"v":"ver","max_ts":7,"folded":-5}',
        b'{"keys":["u2|x"],"v":"ver","max_ts":1795716070000000,"folded":1795716070000000}',
    ]
    expected = [
        ("HSET", keys[0], layout.tile_field((g, int(starts[1]))), b'{"n":2,"s":1.5}',
         "o:p0#1", "[1,2]", "m", meta[0]),
        ("PEXPIREAT", keys[0], 4_102_444_800_000),
        ("DEL", keys[1]),
        ("HSET", keys[1], layout.tile_field((g, int(starts[0]))), b'{"n":1}',
         layout.tile_field((g, 0)), b'{"n":3}', "o:p0#1", "[3,0]", "m", meta[1]),
        ("PEXPIREAT", keys[1], 4_102_444_801_000),
    ]  # fmt: skip
    packed = cmd.buffer(rows)
    assert bytes(packed) == b"".join(_packed(expected))
    redis_client.hset(keys[1], mapping={"stale": "y"})
    conn = TileConnection(redis_client)
    conn.send([packed], len(expected))
    conn.drain()
    assert redis_client.hgetall(keys[1]).keys() == {
        layout.tile_field((g, int(starts[0]))).encode(),
        layout.tile_field((g, 0)).encode(),
        b"o:p0#1",
        b"m",
    }
    assert orjson.loads(redis_client.hget(keys[0], "m"))["max_ts"] == 7
    assert redis_client.pexpiretime(keys[1]) == 4_102_444_801_000


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.binary(max_size=3000), max_size=1200),
    st.integers(0, 64),
    st.sampled_from([2048, 1 << 16]),
)
def test_scatter_sends_write_every_buffer_in_order(
    buffers: list[bytes], skip: int, sndbuf: int
) -> None:
    """`_send_all` over a small socket buffer (partial writes) and more buffers than one
    `sendmsg` takes gives the bytes of the buffers joined, memoryview slices included."""
    big = memoryview(bytes(range(256)) * 400)[skip:]
    parts: list[bytes | memoryview] = [*buffers, big, b"", *buffers[:3]]
    want = b"".join(bytes(p) for p in parts)
    out, into = socket.socketpair()
    out.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    out.settimeout(10)
    got = bytearray()

    def read() -> None:
        while len(got) < len(want):
            got.extend(into.recv(1 << 16))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        _send_all(out, parts)
        reader.join(10)
    finally:
        out.close()
        into.close()
    assert bytes(got) == want


class _SilentServer:
    """A TCP peer that accepts one connection and answers only what the test tells it to."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.peer: socket.socket | None = None
        self._accepted = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.peer, _ = self.listener.accept()
        self._accepted.set()

    def reply(self, data: bytes) -> None:
        assert self._accepted.wait(5)
        assert self.peer is not None
        self.peer.sendall(data)

    def close(self) -> None:
        if self.peer is not None:
            self.peer.close()
        self.listener.close()


def test_send_past_the_unread_limit_counts_what_arrived_and_never_waits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past `MAX_UNREAD`, `send` counts the replies already received (a partial one kept
    for later) and goes on: it must not wait for a Redis that is still busy."""
    monkeypatch.setattr(redis_writer, "MAX_UNREAD", 0)
    server = _SilentServer()
    # No handshake on connect: the server answers nothing it is not told to.
    client = redis.Redis(port=server.port, protocol=2, lib_name=None, lib_version=None)
    conn = TileConnection(client)
    try:
        conn.send([b"x"], 3)
        conn._settle(every=True)
        server.reply(b":1\r\n-ERR no\r\n:")  # two replies and a part of the third
        deadline = time.monotonic() + 5
        while conn._unread > 1 and time.monotonic() < deadline:
            conn._count_received()
        assert conn._unread == 1 and conn._buffer == b":"
        done = threading.Event()

        def more() -> None:
            conn.send([b"y"], 2)  # Redis has not answered the third: this must not wait
            done.set()

        threading.Thread(target=more, daemon=True).start()
        assert done.wait(5), "send waited for replies Redis had not sent"
        assert conn._unread == 3
        server.reply(b"1\r\n:1\r\n:1\r\n")
        with pytest.raises(StorageError, match=r"rejected 1 tile write.*ERR no"):
            conn.drain()
        assert conn._unread == 0 and conn._buffer == b""
    finally:
        server.close()


def test_counted_replies_and_drained_ones_add_up_against_redis(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many sends past a tiny unread limit: every reply is counted once, in order, and the
    one rejected write is still raised by the next drain."""
    monkeypatch.setattr(redis_writer, "MAX_UNREAD", 50)
    redis_client.set("plain", "x")
    conn = TileConnection(redis_client)
    for batch in range(40):
        commands: list[tuple[object, ...]] = [("HSET", f"k{i}", "b", batch) for i in range(300)]
        if batch == 17:
            commands.append(("HSET", "plain", "a", 1))  # WRONGTYPE
        conn.send(_packed(commands), len(commands))
    with pytest.raises(StorageError, match=r"rejected 1 tile write.*WRONGTYPE"):
        conn.drain()
    assert conn._unread == 0 and conn._buffer == b""
    assert redis_client.hget("k299", "b") == b"39"
