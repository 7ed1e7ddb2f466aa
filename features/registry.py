"""The applied registry: definitions with a content hash and a version per view (SPEC §2).

`apply` stores one JSON document under `layout.registry_key(project)` and its hash under
`registry_key(project) + ":hash"` in one WATCH/MULTI transaction (two concurrent applies
cannot interleave; the loser re-plans against the winner), publishes the hash on
`layout.registry_channel(project)`, and mirrors the document to a JSON file (temporary
name, then rename). Other processes follow it with `RegistryWatcher`, which costs one GET
of the hash per interval and re-reads the document only when the hash changed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import redis

from features.durations import now_us
from features.errors import BreakingChangeError, RegistryError, StorageError
from features.layout import registry_channel, registry_key
from features.model import Definitions, definitions_from_dict, definitions_to_dict
from features.registry_diff import Change, Plan, diff, view_form

__all__ = [
    "Change",
    "Plan",
    "Registry",
    "RegistryWatcher",
    "applied_hash",
    "apply",
    "apply_registry",
    "content_hash",
    "load_applied",
    "plan",
    "view_form",
]

FORMAT = 1
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Registry:
    """An applied set of definitions."""

    definitions: Definitions
    content_hash: str  # sha256 of the canonical JSON (features.model.definitions_to_dict)
    versions: Mapping[str, int]  # view -> version; 1 when added, +1 whenever it changes
    applied_at: int  # µs


def content_hash(defs: Definitions) -> str:
    """sha256 of the canonical JSON: independent of file layout, item order and key order.

    The order of features in a view and of columns in a schema is content (it shows in
    `view:*` expansions and in the offline log).
    """
    canonical = orjson.dumps(definitions_to_dict(defs), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


def plan(current: Registry | None, new: Definitions) -> Plan:
    """What applying `new` over `current` would change, and the resulting view versions."""
    if current is None:
        return diff(None, {}, new)
    return diff(current.definitions, current.versions, new)


def apply(
    client: redis.Redis,
    project: str,
    defs: Definitions,
    mirror: Path | None = None,
    *,
    allow_breaking: bool = False,
) -> Registry:
    """Store `defs` as the applied registry; refuse breaking changes unless allowed.

    Raises `BreakingChangeError` (nothing stored) or `StorageError` (Redis unreachable).
    Applying the same content again stores nothing and returns the current registry.
    """
    key = registry_key(project)
    new_hash = content_hash(defs)
    try:
        with client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(key)
                    current = _current(pipe.get(key), key, allow_breaking)
                    changes = plan(current, defs)
                    if changes.breaking and not allow_breaking:
                        raise BreakingChangeError([str(c) for c in changes.breaking])
                    if current is not None and current.content_hash == new_hash:
                        pipe.unwatch()
                        registry = current
                        document = _encode(current)
                        break
                    registry = Registry(defs, new_hash, dict(changes.new_versions), now_us())
                    document = _encode(registry)
                    staged = _stage_mirror(mirror, document)
                    pipe.multi()
                    pipe.set(key, document)
                    pipe.set(key + ":hash", new_hash)
                    pipe.publish(registry_channel(project), new_hash)
                    try:
                        pipe.execute()
                    except BaseException:
                        _discard(staged)
                        raise
                    _commit_mirror(staged, mirror)
                    log.info(
                        "registry applied",
                        extra={"project": project, "hash": new_hash, "versions": registry.versions},
                    )
                    return registry
                except redis.WatchError:
                    continue  # another apply won the race: plan again against it
    except redis.RedisError as exc:
        raise _storage_error(client, exc) from exc
    if mirror is not None and _read_bytes(mirror) != document:
        _commit_mirror(_stage_mirror(mirror, document), mirror)
    return registry


apply_registry = apply  # the name the API and its tests use


def load_applied(client: redis.Redis, project: str) -> Registry | None:
    """The applied registry of a project, or `None` if nothing was applied yet."""
    key = registry_key(project)
    try:
        raw = client.get(key)
    except redis.RedisError as exc:
        raise _storage_error(client, exc) from exc
    return _decode(raw, key)


def applied_hash(client: redis.Redis, project: str) -> str | None:
    """The content hash of the applied registry (one cheap GET), or `None`."""
    try:
        raw = client.get(registry_key(project) + ":hash")
    except redis.RedisError as exc:
        raise _storage_error(client, exc) from exc
    if raw is None:
        return None
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def read_mirror(path: Path) -> Registry | None:
    """The registry mirrored to a JSON file, or `None` if the file does not exist."""
    return _decode(_read_bytes(path), str(path))


class RegistryWatcher:
    """Follows a project's applied registry without restarts (thread-safe).

    `current()` checks the hash at most every `interval_s` and re-reads the document only
    when it changed. When Redis is briefly unreachable the last registry read is kept.
    """

    def __init__(self, client: redis.Redis, project: str, interval_s: float = 1.0) -> None:
        self._client = client
        self._project = project
        self._interval = interval_s
        self._registry: Registry | None = None
        self._checked = -float("inf")
        self._lock = threading.Lock()

    def current(self) -> Registry | None:
        """The applied registry as of at most `interval_s` ago (`None`: nothing applied)."""
        if time.monotonic() - self._checked < self._interval:
            return self._registry
        with self._lock:
            if time.monotonic() - self._checked >= self._interval:
                self._refresh()
        return self._registry

    def _refresh(self) -> None:
        try:
            found = applied_hash(self._client, self._project)
            known = self._registry.content_hash if self._registry is not None else None
            if found != known:
                self._registry = load_applied(self._client, self._project) if found else None
                log.info("registry changed", extra={"project": self._project, "hash": found})
        except StorageError as exc:
            if self._registry is None:
                raise
            # One line per failed poll: a Redis outage would otherwise log a traceback a second.
            log.warning("registry check failed; keeping the current registry: %s", exc)
        self._checked = time.monotonic()

    def close(self) -> None:
        """Nothing to release: the Redis client belongs to the caller."""


def _encode(registry: Registry) -> bytes:
    return orjson.dumps(
        {
            "format": FORMAT,
            "content_hash": registry.content_hash,
            "versions": dict(sorted(registry.versions.items())),
            "applied_at": registry.applied_at,
            "definitions": definitions_to_dict(registry.definitions),
        },
        option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS,
    )


def _decode(raw: Any, where: str) -> Registry | None:
    if raw is None:
        return None
    try:
        doc = orjson.loads(raw)
        return Registry(
            definitions=definitions_from_dict(doc["definitions"]),
            content_hash=str(doc["content_hash"]),
            versions={str(k): int(v) for k, v in doc["versions"].items()},
            applied_at=int(doc["applied_at"]),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        msg = f"the applied registry at {where} is unreadable ({exc}); run `rillet apply` again"
        raise RegistryError(msg) from exc


def _current(raw: Any, key: str, allow_breaking: bool) -> Registry | None:
    """The registry `apply` builds on; an unreadable one is replaced only if breaking is allowed."""
    try:
        return _decode(raw, key)
    except RegistryError as exc:
        if allow_breaking:
            log.warning("replacing an unreadable registry document", extra={"key": key})
            return None
        msg = f"{exc}; `rillet apply --allow-breaking` replaces it (view versions restart at 1)"
        raise RegistryError(msg) from exc


def _stage_mirror(mirror: Path | None, document: bytes) -> Path | None:
    """Write the mirror's next content to a temporary file beside it (renamed on commit)."""
    if mirror is None:
        return None
    try:
        mirror.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{mirror.name}.", suffix=".tmp", dir=mirror.parent)
        with os.fdopen(fd, "wb") as out:
            out.write(document)
            out.flush()
            os.fsync(out.fileno())
    except OSError as exc:
        msg = f"cannot write the registry mirror {mirror}: {exc}; nothing was applied"
        raise RegistryError(msg) from exc
    return Path(name)


def _commit_mirror(staged: Path | None, mirror: Path | None) -> None:
    if staged is None or mirror is None:
        return
    try:
        os.replace(staged, mirror)
    except OSError as exc:
        _discard(staged)
        msg = f"the registry was applied but its mirror {mirror} could not be written: {exc}"
        raise RegistryError(msg) from exc


def _discard(staged: Path | None) -> None:
    if staged is not None:
        staged.unlink(missing_ok=True)


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        msg = f"cannot read the registry mirror {path}: {exc}"
        raise RegistryError(msg) from exc


def _storage_error(client: redis.Redis, exc: Exception) -> StorageError:
    kwargs = client.connection_pool.connection_kwargs
    where = kwargs.get("path") or f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"
    return StorageError(f"Redis at {where} is unreachable or failed: {exc}")
