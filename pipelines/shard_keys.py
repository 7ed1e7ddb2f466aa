"""The Bytewax state keys of the 16 ledger and tile shards, placed evenly on the workers.

Bytewax 0.21 puts a stateful key on worker `siphash13(key) % workers` (Rust's
`DefaultHasher` over the key's UTF-8 bytes and a 0xff terminator). The first keys
(`"00"`..`"15"`) fell 12:4 on two workers and 6:3:6:1 on four, so one worker did most of
the work. `BALANCED` names shard `i` so that it lands on worker `i % workers` for every
worker count from 1 to 8 (and 10, 12, 14 to 16): its hash is `i` modulo 1680.

The keys are recovery state: a store keeps the keys it was made with. A recovery
directory made by this version carries a `MARKER` file naming its keys; one without it
was made with `LEGACY` keys and keeps them (renaming would lose the ledgers' state).

>>> [worker_of(key, 2) for key in BALANCED[:4]], [worker_of(key, 2) for key in LEGACY[:8]]
([0, 1, 0, 1], [0, 0, 0, 0, 0, 0, 1, 0])
"""

from __future__ import annotations

from pathlib import Path

SHARDS = 16  # ledger and tile shards: recovery state, never change on a live recovery dir
LEGACY = tuple(f"{i:02d}" for i in range(SHARDS))
# Found by `balanced_key` (a search of ~1,700 names per shard); checked by the tests.
BALANCED = (
    "00.1062", "01.2001", "02.207", "03.1767", "04.487", "05.1296", "06.2918", "07.910",
    "08.270", "09.289", "10.235", "11.3001", "12.1338", "13.584", "14.2087", "15.1853",
)  # fmt: skip
MARKER = "rillet-shard-keys"
_BALANCED_MARK = "balanced"  # the marker's text for `BALANCED`
_SPREAD = 1680  # lcm(1..8, 10, 12, 14, 15, 16): the worker counts BALANCED spreads evenly
_M = (1 << 64) - 1


def store_keys(directory: Path) -> tuple[str, ...]:
    """The shard keys of an existing recovery directory (its marker, or `LEGACY`)."""
    marker = directory / MARKER
    if marker.exists() and marker.read_text().strip() == _BALANCED_MARK:
        return BALANCED
    return LEGACY


def mark_store(directory: Path) -> tuple[str, ...]:
    """Record in a new recovery directory that its shards use `BALANCED` keys."""
    (directory / MARKER).write_text(_BALANCED_MARK + "\n")
    return BALANCED


def worker_of(key: str, workers: int) -> int:
    """The worker Bytewax 0.21 runs the state of `key` on (`timely.rs`, `partition`)."""
    return siphash13(key.encode() + b"\xff") % workers


def balanced_key(shard: int) -> str:
    """The first name `"<shard>.<n>"` whose placement is `shard % w` for the spread counts."""
    n = 0
    while siphash13(f"{shard:02d}.{n}".encode() + b"\xff") % _SPREAD != shard % _SPREAD:
        n += 1
    return f"{shard:02d}.{n}"


def siphash13(data: bytes) -> int:
    """SipHash-1-3 with zero keys: Rust's `DefaultHasher` (`std::hash::SipHasher13`).

    >>> hex(siphash13(b""))
    '0xd1fba762150c532c'
    """
    v0, v1 = 0x736F6D6570736575, 0x646F72616E646F6D
    v2, v3 = 0x6C7967656E657261, 0x7465646279746573

    def sip_round(v0: int, v1: int, v2: int, v3: int) -> tuple[int, int, int, int]:
        v0 = (v0 + v1) & _M
        v1 = _rotl(v1, 13) ^ v0
        v0 = _rotl(v0, 32)
        v2 = (v2 + v3) & _M
        v3 = _rotl(v3, 16) ^ v2
        v0 = (v0 + v3) & _M
        v3 = _rotl(v3, 21) ^ v0
        v2 = (v2 + v1) & _M
        v1 = _rotl(v1, 17) ^ v2
        v2 = _rotl(v2, 32)
        return v0, v1, v2, v3

    end = len(data) - len(data) % 8
    for at in range(0, end, 8):
        m = int.from_bytes(data[at : at + 8], "little")
        v0, v1, v2, v3 = sip_round(v0, v1, v2, v3 ^ m)
        v0 ^= m
    last = ((len(data) & 0xFF) << 56) | int.from_bytes(data[end:], "little")
    v0, v1, v2, v3 = sip_round(v0, v1, v2, v3 ^ last)
    v0 ^= last
    v2 ^= 0xFF
    for _ in range(3):
        v0, v1, v2, v3 = sip_round(v0, v1, v2, v3)
    return v0 ^ v1 ^ v2 ^ v3


def _rotl(x: int, bits: int) -> int:
    return ((x << bits) | (x >> (64 - bits))) & _M
