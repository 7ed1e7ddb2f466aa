"""Child `rillet` processes for `rillet demo` and `rillet up`: start, wait, stop in order.

Each child runs the same interpreter (`python -m serving.cli.main ...`) in a session of
its own, so Ctrl-C reaches only the parent, which then stops the children in a sensible
order (API, then pipeline, then Redis) and gives each time to flush.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from features.errors import RilletError


class ChildError(RilletError):
    """A child `rillet` process failed, timed out or never became ready."""


@dataclass
class Child:
    """A running `rillet` subcommand, its output going to `log` (or to our terminal)."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path | None

    def running(self) -> bool:
        """Whether the process has not exited yet."""
        return self.process.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Send `sig`, wait up to `timeout` seconds, then SIGKILL; return the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return int(self.process.returncode)

    def tail(self, lines: int = 15) -> str:
        """The last lines of the child's log, for error messages."""
        if self.log is None or not self.log.exists():
            return ""
        text = self.log.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


def rillet_argv(*args: str) -> list[str]:
    """The command line of a `rillet` subcommand run by this very interpreter."""
    return [sys.executable, "-m", "serving.cli.main", *args]


def start_child(
    name: str, args: Sequence[str], env: Mapping[str, str], log_dir: Path | None
) -> Child:
    """Start `rillet <args>` with `env`; output to `log_dir/<name>.log`, or inherited."""
    log = None
    out: int | object = None
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        log = log_dir / f"{name}.log"
        out = log.open("ab")
    try:
        process = subprocess.Popen(
            rillet_argv(*args),
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,  # type: ignore[arg-type]
            stderr=subprocess.STDOUT if log is not None else None,
            start_new_session=True,
        )
    finally:
        if log is not None:
            out.close()  # type: ignore[union-attr]
    return Child(name=name, process=process, log=log)


def run_child(
    name: str,
    args: Sequence[str],
    env: Mapping[str, str],
    log_dir: Path | None,
    timeout: float,
) -> Child:
    """Run `rillet <args>` to completion; a non-zero exit or a timeout raises `ChildError`."""
    child = start_child(name, args, env, log_dir)
    try:
        child.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        child.stop(signal.SIGTERM, timeout=5)
        msg = f"`rillet {' '.join(args)}` did not finish within {timeout:.0f} s:\n{child.tail()}"
        raise ChildError(msg) from None
    if child.process.returncode != 0:
        msg = (
            f"`rillet {' '.join(args)}` failed with exit code {child.process.returncode}:\n"
            f"{child.tail()}"
        )
        raise ChildError(msg)
    return child


def wait_until_ready(child: Child, url: str, timeout: float) -> None:
    """Poll `url` until it answers 200; fail early if the child exits."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if not child.running():
                msg = f"{child.name} exited with code {child.process.returncode}:\n{child.tail()}"
                raise ChildError(msg)
            try:
                response = client.get(url)
                if response.status_code == 200:
                    return
                last = f"HTTP {response.status_code}: {response.text[:200]}"
            except httpx.HTTPError as exc:
                last = str(exc) or type(exc).__name__
            time.sleep(0.2)
    msg = f"{child.name} was not ready at {url} after {timeout:.0f} s ({last}):\n{child.tail()}"
    raise ChildError(msg)
