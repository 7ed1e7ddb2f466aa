"""A pipelined connection: the tile step's writes overlap its next batch, in one order.

The tile step used to wait for each batch's round trip, so every event paid for Redis's
own work on top of ours. `TileConnection.send` returns at once: the connection's sender
thread hands the buffers to the socket unjoined (`_send_all`: a flush's few MB fill the
socket's buffer, and the writes then wait for Redis to read them, which no longer holds up
the step); the replies are collected later: `send` counts those already received once
many are outstanding, and waits for all of them only at a barrier (`drain`). Every write
the step sends has a one-line reply (an integer or an error), so collecting them is
counting newlines in C, not parsing replies in Python.

One connection per tiles engine (one engine per worker thread) keeps each worker's writes
in order without locks.
`drain()` waits for every reply and raises on any error. The tile step calls it in its
Bytewax `snapshot()`, so an epoch is never committed before its tiles are in Redis, and
before it re-reads an entity it had dropped from its cache, so no read is stale.
"""

from __future__ import annotations

import select
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from features.errors import StorageError

if TYPE_CHECKING:
    import redis

RECV = 1 << 20
IOV_MAX = 512  # buffers per `sendmsg` call (Linux allows 1024)
MAX_UNREAD = 200_000  # replies outstanding before `send` counts those already received
MAX_UNREAD_WAIT = 2_000_000  # replies outstanding before `send` waits for all of them
MAX_SENDS = 4  # payloads queued for the sender thread before `send` waits for one


class TileConnection:
    """One Redis connection with a count of one-line replies still to collect."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._conn: Any = None
        self._unread = 0  # one-line replies sent for and not read yet
        self._buffer = b""  # bytes received past the last counted reply
        self._errors: list[str] = []
        self._sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rillet-tile-send")
        self._sending: deque[Future[None]] = deque()  # payloads handed over, in order

    def _sock(self) -> Any:
        if self._conn is None:
            self._conn = self.client.connection_pool.get_connection()
            self._conn.connect()
        return self._conn._sock

    def send(self, packed: Sequence[bytes], count: int) -> None:
        """Send `count` commands whose replies are one line each; wait for neither."""
        if not count:
            return
        if self._unread > MAX_UNREAD_WAIT:
            self.drain()
        elif self._unread > MAX_UNREAD:
            self._count_received()
        self._settle(every=len(self._sending) >= MAX_SENDS)
        try:
            sock = self._sock()
        except BaseException:
            self._broken()
            raise
        self._sending.append(self._sender.submit(_send_all, sock, list(packed)))
        self._unread += count

    def drain(self) -> None:
        """Collect every outstanding reply; raise `StorageError` if any was an error."""
        self._settle(every=True)
        try:
            self._count_replies()
        except BaseException:
            self._broken()
            raise
        if self._errors:
            errors, self._errors = self._errors, []
            msg = f"Redis rejected {len(errors)} tile write(s); first: {errors[0]}"
            raise StorageError(msg)

    def _settle(self, every: bool) -> None:
        """Take the finished sends (`every`: wait for all); raise the first that failed."""
        try:
            while self._sending and (every or self._sending[0].done()):
                self._sending.popleft().result()
        except BaseException:
            self._broken()
            raise

    @staticmethod
    def _recv(sock: Any) -> bytes:
        data: bytes = sock.recv(RECV)
        if not data:
            msg = "Redis closed the connection with replies outstanding"
            raise StorageError(msg)
        return data

    def _count_received(self) -> None:
        """Count the replies Redis has already sent, without waiting for the rest: a wait
        here would idle the step until Redis caught up with the flush still in flight."""
        try:
            sock = self._sock()
            ready = select.poll()  # not `select.select`: it fails on descriptors past 1023
            ready.register(sock, select.POLLIN)
            while self._unread and ready.poll(0):
                self._count_lines(self._buffer + self._recv(sock))
        except BaseException:
            self._broken()
            raise

    def _count_replies(self) -> None:
        """Consume `_unread` one-line replies; the buffer always starts at a reply."""
        while self._unread:
            data = self._buffer or self._recv(self._sock())
            if not self._count_lines(data):
                self._buffer = data + self._recv(self._sock())

    def _count_lines(self, data: bytes) -> int:
        """Count the whole replies in `data` (at most `_unread`), note any errors, and keep
        the rest (part of a reply) in the buffer; returns how many were counted."""
        parts = data.split(b"\n", self._unread)
        rest = parts[-1]  # past the last newline counted: a partial or a later reply
        lines = len(parts) - 1
        if not lines:
            self._buffer = data
            return 0
        used = data[: len(data) - len(rest)]
        if used[:1] == b"-" or b"\n-" in used:
            self._note_errors(used)
        self._unread -= lines
        self._buffer = rest
        return lines

    def _note_errors(self, data: bytes) -> None:
        for line in data.split(b"\n"):
            if line.startswith(b"-") and len(self._errors) < 10:
                self._errors.append(line.rstrip(b"\r").decode(errors="replace"))

    def _broken(self) -> None:
        """Drop a connection whose reply stream is no longer in a known state."""
        for future in self._sending:
            future.exception()  # wait: nothing may still be writing to the socket
        self._sending.clear()
        if self._conn is not None:
            self._conn.disconnect()
            self.client.connection_pool.release(self._conn)
        self._conn = None
        self._unread = 0
        self._buffer = b""


def _send_all(sock: Any, buffers: list[bytes | memoryview]) -> None:
    """Write every buffer in order with scatter `sendmsg` calls (the sender thread's work):
    the payload is never joined into one copy, and a partial write resumes where it ended."""
    views = [memoryview(b) for b in buffers if len(b)]
    first = 0
    while first < len(views):
        sent = sock.sendmsg(views[first : first + IOV_MAX])
        while sent:
            size = views[first].nbytes
            if sent >= size:
                sent -= size
                first += 1
            else:
                views[first] = views[first][sent:]
                sent = 0
