"""A project-owned `redis-server` for `rillet demo` and `rillet up` when none is configured.

The server binds loopback on a port of its own (6479 when free), keeps its files in a data
directory under `.rillet/`, and is stopped by pid. A server left behind by a crashed run
of the same data directory is found through its pid file and stopped before a new start.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from features.errors import StorageError

PREFERRED_PORT = 6479
PID_FILE = "redis-server.pid"
URL_FILE = "redis.url"


@dataclass
class LocalRedis:
    """A running redis-server owned by this process."""

    directory: Path
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        """The URL clients use (database 0)."""
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self, timeout: float = 15.0) -> None:
        """Shut the server down (SIGTERM: AOF flushed when enabled); SIGKILL after `timeout`."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for name in (PID_FILE, URL_FILE):
            with contextlib.suppress(FileNotFoundError):
                (self.directory / name).unlink()


def port_is_free(port: int) -> bool:
    """Whether nothing listens on `port` on loopback (bind test)."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port(preferred: int | None = None) -> int:
    """`preferred` when it is free, else a port the kernel hands out."""
    if preferred and port_is_free(preferred):
        return preferred
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_local_redis(
    directory: Path,
    *,
    persist: bool,
    port: int | None = None,
    timeout: float = 15.0,
) -> LocalRedis:
    """Start redis-server with `directory` as its data dir and wait until it answers PING.

    With `persist`, the append-only file is on (data survives restarts, as `rillet up`
    wants); without it nothing is written to disk (the demo starts from scratch).
    """
    binary = shutil.which("redis-server")
    if binary is None:
        msg = (
            "redis-server is not installed: install it (Debian/Ubuntu: "
            "sudo apt-get install redis-server, or run `make demo` as root) "
            "or point RILLET_REDIS_URL at a running Redis"
        )
        raise StorageError(msg)
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    stop_leftover(directory)
    port = port or free_port(PREFERRED_PORT)
    log = directory / "redis.log"
    persistence = ["--appendonly", "yes", "--appendfsync", "everysec", "--save", ""]
    if not persist:
        persistence = ["--appendonly", "no", "--save", ""]
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory)]
    args += ["--daemonize", "no", "--logfile", str(log), *persistence]
    # A session of its own: Ctrl-C reaches only `rillet`, which stops the pipeline and
    # the API before Redis, so they can flush their last writes.
    process = subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    server = LocalRedis(directory=directory, port=port, process=process)
    (directory / PID_FILE).write_text(f"{process.pid}\n")
    (directory / URL_FILE).write_text(f"{server.url}\n")
    _wait_for_ping(server, log, timeout)
    return server


def stop_leftover(directory: Path) -> None:
    """Stop a redis-server that an earlier, crashed run started on this data dir."""
    pid_file = directory / PID_FILE
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return
    if _is_redis_server(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while _is_redis_server(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
    pid_file.unlink(missing_ok=True)


def _is_redis_server(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        status = Path(f"/proc/{pid}/stat").read_text().split()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    return b"redis-server" in cmdline and status[2] != "Z"


def _wait_for_ping(server: LocalRedis, log: Path, timeout: float) -> None:
    client = redis.Redis(port=server.port, socket_connect_timeout=1)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if server.process.poll() is not None or time.monotonic() > deadline:
                    server.stop()
                    tail = log.read_text()[-500:] if log.exists() else ""
                    msg = f"redis-server did not start on port {server.port}: {tail.strip()}"
                    raise StorageError(msg) from None
                time.sleep(0.05)
    finally:
        client.close()
