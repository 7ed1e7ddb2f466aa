"""The tile step's pipelined connection against a real Redis: order, counting, errors."""

from __future__ import annotations

import hiredis
import orjson
import pytest
import redis

from features import layout
from features.errors import StorageError
from features.tiles import EntityTiles
from pipelines.sinks.redis_tiles import (
    bulk,
    delete_command,
    expire_command,
    meta_head,
    pack_stream_write,
)
from pipelines.sinks.redis_writer import TileConnection


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


def test_hand_built_tile_commands_are_the_commands_they_name(redis_client: redis.Redis) -> None:
    """The tile step frames HSET/HDEL/PEXPIREAT itself; each must equal hiredis's packing."""
    key = layout.view_key("p", "v", "u1")
    raw = bulk(key.encode())
    tiles = [(60_000_000, 1_795_716_000_000_000), (900_000_000, 1_795_715_100_000_000)]
    assert delete_command(raw, tiles) == hiredis.pack_command(
        ("HDEL", key, *(layout.tile_field(t) for t in tiles))
    )
    assert expire_command(raw, 4_102_444_800_000) == hiredis.pack_command(
        ("PEXPIREAT", key, 4_102_444_800_000)
    )
    state = EntityTiles(tiles={t: {"n": i + 1} for i, t in enumerate(tiles)}, max_ts=7)
    head = meta_head(["u1"], "ver")
    marks = {"p0#1": (1, 2)}
    data = pack_stream_write(raw, head, state, tiles[:1], marks, clear_pending=True)
    meta = b'{"keys":["u1"],"v":"ver","max_ts":7,"folded":%d,"pos":{"p0#1":[1,2]}}' % (
        state.folded_until
    )
    assert data == hiredis.pack_command(
        ("HSET", key, layout.tile_field(tiles[0]), b'{"n":1}', "m", meta, "p", "[]")
    )
    state.pending = [[9, "e9", {"amount": 1.5}]]
    pending = pack_stream_write(raw, head, state, tiles, marks, clear_pending=False)
    tile_fields = [x for t in tiles for x in (layout.tile_field(t), orjson.dumps(state.tiles[t]))]
    assert pending == hiredis.pack_command(
        ("HSET", key, *tile_fields, "m", meta, "p", orjson.dumps(state.pending))
    )
    conn = TileConnection(redis_client)
    fields = {layout.tile_field(t): "x" for t in tiles}
    redis_client.hset(key, mapping={**fields, "keep": "y"})
    conn.send([delete_command(raw, tiles), data, expire_command(raw, 4_102_444_800_000)], 3)
    conn.drain()
    stored = redis_client.hgetall(key)
    assert stored.keys() == {b"keep", layout.tile_field(tiles[0]).encode(), b"m", b"p"}
    assert orjson.loads(stored[b"m"])["pos"] == {"p0#1": [1, 2]}
    assert redis_client.pexpiretime(key) == 4_102_444_800_000
