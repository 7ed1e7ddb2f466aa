"""Rebuilding online tiles from the offline log (`rillet backfill`).

For each chosen view, DuckDB reads the deduplicated log events of the last `ttl` (older
events cannot reach any window or keep an entity alive), sorted by entity; each entity's
tiles are rebuilt from nothing with `features.tiles.ViewTiler` — the stream's own code —
pruned as the stream prunes, and written whole with the stream's `write_tiles`, a batch of
entities per pipelined round trip. Values are absolute, so running it twice changes
nothing.

Hand-over to the stream (docs/semantics.md): the online hash is the stream's state (the
tile step loads an entity from Redis when it is not cached), so a backfill done while the
pipeline is stopped is simply picked up when it starts again. The hash keeps the view
version (`m.v`) the stream checks and its replay marks (the `o:<stream>` fields, and
`m.pos` of older versions), so a restart neither resets nor re-applies anything; the marks
of another version of the view are deleted with its tiles. A running pipeline would
overwrite rebuilt entities it still caches, so `backfill` refuses to run while the
pipeline's counters keep moving.
"""

# ruff: noqa: S608 - SQL is built here on purpose; names go through ident()

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from features import layout
from features.durations import now_us
from features.errors import RilletError
from features.model import Definitions, FeatureView
from features.tiles import EntityTiles, TileKey, ViewTiler
from pipelines.offline.engine import connect
from pipelines.offline.log import EID, TS, LogScan, ident
from pipelines.sinks.redis_tiles import write_tiles

BATCH_ENTITIES = 500
READ_ROWS = 65_536
Progress = Callable[[str, int, int], None]  # (view, events done, events total)


class PipelineRunningError(RilletError):
    """The stream pipeline looks alive; a backfill now could be overwritten by it."""


@dataclass
class ViewReport:
    """What a backfill did for one view."""

    view: str
    events: int = 0
    entities: int = 0
    newest: int | None = None


@dataclass
class BackfillReport:
    """What a backfill did, per view."""

    views: list[ViewReport] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON form for `--json`."""
        return {
            "views": [
                {"view": v.view, "events": v.events, "entities": v.entities} for v in self.views
            ],
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class EntityFilter:
    """Which entities to rebuild: all, those with events in `[ts_from, ts_to]`, or a list.

    `keys` is an Arrow table of join-key values (the entities of an imported file).
    """

    ts_from: int | None = None
    ts_to: int | None = None
    keys: Any = None


def pipeline_running(client: Any, project: str, sources: Sequence[str], wait_s: float) -> bool:
    """Whether the pipeline's counters of `sources` move within `wait_s` (it reports lag
    every second while it runs); counters older than a minute mean it is stopped."""

    def stamps() -> list[bytes | None]:
        pipe = client.pipeline(transaction=False)
        for source in sources:
            pipe.hget(layout.source_stats_key(project, source), "updated_at")
        return list(pipe.execute())

    before = stamps()
    recent = [int(s) for s in before if s is not None and now_us() - int(s) < 60_000_000]
    if not recent:
        return False
    time.sleep(wait_s)
    return stamps() != before


class Backfill:
    """Rebuilds the online tiles of views from the log of their sources."""

    def __init__(
        self,
        client: Any,
        project: str,
        defs: Definitions,
        root: Path,
        *,
        now: int | None = None,
        batch_entities: int = BATCH_ENTITIES,
        memory_limit: str = "2GB",
        threads: int | None = None,
    ) -> None:
        from pipelines.plan import Plan

        self.client = client
        self.project = project
        self.defs = defs
        self.root = Path(root)
        self.now = now
        self.batch_entities = batch_entities
        self.memory_limit = memory_limit
        self.threads = threads
        self.versions = {
            name: route.version for name, route in Plan(defs, "backfill").views.items()
        }

    def run(
        self,
        views: Sequence[str],
        entities: EntityFilter | None = None,
        progress: Progress | None = None,
    ) -> BackfillReport:
        """Rebuild `views` (all entities unless `entities` narrows them)."""
        started = time.perf_counter()
        report = BackfillReport()
        for name in views:
            report.views.append(
                self.view(self.defs.view(name), entities or EntityFilter(), progress)
            )
        report.seconds = time.perf_counter() - started
        return report

    def view(
        self, view: FeatureView, entities: EntityFilter, progress: Progress | None = None
    ) -> ViewReport:
        """Rebuild one view; returns what was read and written."""
        now = self.now if self.now is not None else now_us()
        report = ViewReport(view.name)
        con = connect(self.memory_limit, self.threads)
        try:
            total = self._select(con, view, entities, now)
            if progress is not None:
                progress(view.name, 0, total)
            tiler = ViewTiler(view)
            batch: list[tuple[tuple[Any, ...], EntityTiles]] = []
            for values, state, events in self._entities(con, view, tiler, now):
                report.events += events
                report.entities += 1
                if state.max_ts is not None and (
                    report.newest is None or state.max_ts > report.newest
                ):
                    report.newest = state.max_ts
                batch.append((values, state))
                if len(batch) >= self.batch_entities:
                    self._write(view, tiler, batch, now)
                    batch = []
                    if progress is not None:
                        progress(view.name, report.events, total)
            if batch:
                self._write(view, tiler, batch, now)
        finally:
            con.close()
        if report.newest is not None:
            from pipelines.stats import StatsWriter

            for command in StatsWriter(self.client, self.project).freshness_commands(
                {view.name: report.newest}
            ):
                self.client.execute_command(*command)
        if progress is not None:
            progress(view.name, report.events, report.events)
        return report

    def _select(self, con: Any, view: FeatureView, entities: EntityFilter, now: int) -> int:
        """Materialize the view's events (µs times, sorted by entity) in DuckDB; their count."""
        source = self.defs.source(view.source)
        keys = self.defs.join_keys(view.name)
        columns = tuple(dict.fromkeys([*keys, *ViewTiler(view).columns]))
        events = LogScan(self.root, source).sql(columns, ts_from=now - view.ttl, con=con)
        schema = source.columns
        select = [
            f"epoch_us({ident(c)}) AS {ident(c)}" if schema[c].dtype == "timestamp" else ident(c)
            for c in columns
        ]
        key_list = ", ".join(ident(k) for k in keys)
        where = " AND ".join(f"{ident(k)} IS NOT NULL" for k in keys)
        chosen = ""
        if entities.keys is not None:
            con.register("__entities", entities.keys)
            chosen = f" AND ({key_list}) IN (SELECT DISTINCT {key_list} FROM __entities)"
        elif entities.ts_from is not None or entities.ts_to is not None:
            touched = LogScan(self.root, source).sql(
                keys, entities.ts_from, entities.ts_to, con=con
            )
            chosen = f" AND ({key_list}) IN (SELECT DISTINCT {key_list} FROM ({touched}))"
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE __backfill AS SELECT {', '.join(select)}, {TS}, {EID}"
            f" FROM ({events}) WHERE {where}{chosen} ORDER BY {key_list}, {TS}, {EID}"
        )
        rows = con.execute("SELECT count(*) FROM __backfill").fetchall()
        return int(rows[0][0])

    def _entities(
        self, con: Any, view: FeatureView, tiler: ViewTiler, now: int
    ) -> Iterator[tuple[tuple[Any, ...], EntityTiles, int]]:
        """`(join-key values, rebuilt tiles, events)` per entity, in key order."""
        keys = self.defs.join_keys(view.name)
        names = con.execute("SELECT * FROM __backfill LIMIT 0").description
        columns = [d[0] for d in names]
        nkeys = len(keys)
        feature_cols = [c for c in columns[:-2] if c in tiler.columns]
        positions = [columns.index(c) for c in feature_cols]
        reader = con.sql("SELECT * FROM __backfill").to_arrow_reader(READ_ROWS)
        current: tuple[Any, ...] | None = None
        state = EntityTiles()
        count = 0
        apply = tiler.apply
        for record_batch in reader:
            data = [col.to_pylist() for col in record_batch.columns]
            ts_col, eid_col = data[-2], data[-1]
            key_cols = data[:nkeys]
            value_cols = [data[p] for p in positions]
            for i in range(record_batch.num_rows):
                values = tuple(col[i] for col in key_cols)
                if values != current:
                    if current is not None:
                        yield current, state, count
                    current, state, count = values, EntityTiles(), 0
                row = {c: col[i] for c, col in zip(feature_cols, value_cols, strict=True)}
                apply(state, ts_col[i], eid_col[i], row, now)
                count += 1
        if current is not None:
            yield current, state, count

    def _write(
        self,
        view: FeatureView,
        tiler: ViewTiler,
        batch: Sequence[tuple[tuple[Any, ...], EntityTiles]],
        now: int,
    ) -> None:
        """Write a batch of rebuilt entities: two pipelined round trips."""
        hash_keys = [
            layout.view_key(self.project, view.name, layout.entity_id(values))
            for values, _ in batch
        ]
        read = self.client.pipeline(transaction=False)
        for key in hash_keys:
            read.hkeys(key)
            read.hget(key, layout.META_FIELD)
        replies = read.execute()
        version = self.versions[view.name]
        write = self.client.pipeline(transaction=False)
        for i, (values, state) in enumerate(batch):
            tiler.prune(state, now)
            existing = _tile_keys(replies[2 * i])
            kept = set(state.tiles)
            dropped = [k for k in existing if k not in kept]
            write_tiles(write, self.project, view, values, state, kept, dropped)
            meta = orjson.loads(replies[2 * i + 1]) if replies[2 * i + 1] else {}
            same = meta.get("v") == version
            marks = meta.get("pos") if same else None
            stale = [] if same else _mark_fields(replies[2 * i])
            if stale:
                write.hdel(hash_keys[i], *stale)
            write.hset(
                hash_keys[i],
                layout.META_FIELD,
                orjson.dumps(
                    {
                        "max_ts": state.max_ts,
                        "folded": state.folded_until,
                        "keys": list(values),
                        "v": version,
                        "pos": marks or {},
                    }
                ),
            )
        write.execute()


def _mark_fields(fields: Sequence[Any]) -> list[Any]:
    """The stream's replay-mark fields (`o:<stream>`) among the field names of a hash."""
    return [f for f in fields if (f if isinstance(f, bytes) else f.encode()).startswith(b"o:")]


def _tile_keys(fields: Sequence[Any]) -> list[TileKey]:
    """Tile keys among the field names of a hash."""
    out = []
    for raw in fields:
        name = raw.decode() if isinstance(raw, bytes) else raw
        if name.startswith(layout.TILE_PREFIX):
            g, start = name[len(layout.TILE_PREFIX) :].split(":")
            out.append((int(g), int(start)))
    return out
