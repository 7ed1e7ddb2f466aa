"""The compiled registry the pipeline runs on: per source its validator and the views it feeds.

A `PlanSource` hands every step the current `Plan`; the one backed by the applied registry
re-checks it at most once per poll interval, so a newly applied registry is picked up
without a restart while the hot path pays one attribute read per batch.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from features.model import Definitions, FeatureView, Source, view_to_dict
from features.tiles import ViewTiler

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ViewRoute:
    """One view fed by a source: its tiler, its entity's join keys, a content fingerprint."""

    view: FeatureView
    tiler: ViewTiler
    join_keys: tuple[str, ...]
    fingerprint: bytes
    version: str  # a short hash of the fingerprint, stored with the view's online tiles


@dataclass(frozen=True)
class SourcePlan:
    """One source: its definition, its batch validator and the views it feeds."""

    source: Source
    validator: Any
    views: tuple[ViewRoute, ...]


class Plan:
    """Everything the steps need from one version of the definitions."""

    def __init__(self, definitions: Definitions, version: str) -> None:
        from features.schema import SourceValidator

        self.definitions = definitions
        self.version = version
        self.views: dict[str, ViewRoute] = {}
        for name, view in sorted(definitions.views.items()):
            fingerprint = orjson.dumps(view_to_dict(view), option=orjson.OPT_SORT_KEYS)
            self.views[name] = ViewRoute(
                view=view,
                tiler=ViewTiler(view),
                join_keys=definitions.entities[view.entity].join_keys,
                fingerprint=fingerprint,
                version=hashlib.sha1(fingerprint, usedforsecurity=False).hexdigest()[:12],
            )
        self.sources: dict[str, SourcePlan] = {
            name: SourcePlan(
                source=source,
                validator=SourceValidator(source),
                views=tuple(self.views[v.name] for v in definitions.views_of_source(name)),
            )
            for name, source in sorted(definitions.sources.items())
        }
        self.topics: dict[str, list[str]] = {}
        for name, source in sorted(definitions.sources.items()):
            self.topics.setdefault(source.topic, []).append(name)


class PlanSource:
    """Gives the current plan; the base class serves one fixed set of definitions."""

    def __init__(self, definitions: Definitions, version: str = "static") -> None:
        self._plan = Plan(definitions, version)

    def current(self) -> Plan:
        """The plan to use for the next batch."""
        return self._plan


class RegistryPlanSource(PlanSource):
    """Follows the applied registry, re-reading it at most every `poll_seconds`."""

    def __init__(
        self,
        fetch: Callable[[], tuple[Definitions, str] | None],
        fallback: Plan,
        poll_seconds: float = 1.0,
    ) -> None:
        self._fetch = fetch
        self._plan = fallback
        self._poll = poll_seconds
        self._next = time.monotonic() + poll_seconds
        self._lock = threading.Lock()

    def current(self) -> Plan:
        if time.monotonic() >= self._next and self._lock.acquire(blocking=False):
            try:
                self._refresh()
            finally:
                self._next = time.monotonic() + self._poll
                self._lock.release()
        return self._plan

    def _refresh(self) -> None:
        try:
            found = self._fetch()
        except Exception:  # a registry outage must not stop the stream
            log.warning("could not re-read the applied registry; keeping the current one")
            return
        if found is None or found[1] == self._plan.version:
            return
        definitions, version = found
        self._plan = Plan(definitions, version)
        log.info(
            "picked up a newly applied registry",
            extra={"version": version, "views": sorted(definitions.views)},
        )
