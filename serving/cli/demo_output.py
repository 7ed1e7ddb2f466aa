"""What `rillet demo` prints, and the small data it derives from the generated events.

Tables of generated events, feature vectors, status and the training export (rich), the
entities worth showing (the busiest ones), and the spine for the export.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from features.model import Definitions
from pipelines.generator import SourceEvents, training_spine

ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")
COUNTERS = ("applied", "duplicates", "late", "invalid")
EXPECTED_KIND = {"applied": "ok", "duplicates": "duplicate", "late": "late", "invalid": "invalid"}


def generated_table(events: Mapping[str, SourceEvents]) -> Table:
    """Per source: how many events, and how many of each irregular kind."""
    table = Table(title="generated events (broker order, last 7 days)", title_justify="left")
    for name in ("source", "events", "regular", "duplicates", "late", "invalid"):
        table.add_column(name, justify="left" if name == "source" else "right")
    for name, batch in sorted(events.items()):
        c = batch.counts()
        table.add_row(
            name,
            f"{len(batch.events):,}",
            f"{c['ok']:,}",
            f"{c['duplicate']:,}",
            f"{c['late']:,}",
            f"{c['invalid']:,}",
        )
    return table


def stream_progress(console: Console) -> Progress:
    """A progress bar for events judged by the pipeline."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def views_by_entity(defs: Definitions) -> dict[str, list[str]]:
    """View names grouped by entity, so one request fetches every view of an entity."""
    grouped: dict[str, list[str]] = {}
    for name, view in sorted(defs.views.items()):
        grouped.setdefault(view.entity, []).append(name)
    # Entities with more views first (users before user-item pairs before items).
    return dict(sorted(grouped.items(), key=lambda kv: (-len(kv[1]), kv[0])))


def busiest_entities(
    events: Mapping[str, SourceEvents],
    defs: Definitions,
    views: Iterable[str],
    keys: list[str],
    n: int,
) -> list[dict[str, Any]]:
    """The `n` entities with the most accepted events in the sources of `views`."""
    tally: Counter[tuple[Any, ...]] = Counter()
    for source in {defs.views[v].source for v in views}:
        for event in events[source].accepted():
            tally[tuple(event.get(k) for k in keys)] += 1
    return [dict(zip(keys, key, strict=True)) for key, _ in tally.most_common(n)]


def vector_table(entity: str, answer: Mapping[str, Any]) -> Table:
    """One column per entity, one row per `view:feature`, as served online."""
    results = answer["results"]
    as_of = show(answer.get("as_of"))
    table = Table(title=f"entity {entity!r}, as of {as_of}", title_justify="left")
    table.add_column("feature", no_wrap=True)
    for result in results:
        table.add_column(", ".join(str(v) for v in result["entity"].values()), justify="right")
    for ref in answer["features"]:
        table.add_row(ref, *(show(r["values"].get(ref)) for r in results))
    table.add_row("[dim]event_time[/]", *(f"[dim]{show(r.get('event_time'))}[/]" for r in results))
    return table


def plain(value: Any) -> str:
    """`show` without markup, for values inside a list."""
    return str(value) if not isinstance(value, float) else f"{value:.4g}"


def show(value: Any) -> str:
    """A compact, markup-safe cell: floats to 4 digits, times to the second, null as a dash."""
    if value is None:
        return "[dim]—[/]"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 10_000 else f"{value:.4g}"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    if isinstance(value, list):
        return escape("[" + ", ".join("null" if v is None else plain(v) for v in value) + "]")
    if isinstance(value, str) and ISO_TIME.fullmatch(value):
        return value[:19].replace("T", " ") + "Z"  # to the second: narrower tables
    return escape(str(value))


def status_table(report: Mapping[str, Any], events: Mapping[str, SourceEvents]) -> Table:
    """Per source: the pipeline's counters, dead letters and lag; under them, what was sent."""
    table = Table(title="pipeline status per source", title_justify="left")
    table.add_column("source", no_wrap=True, min_width=12)
    for name in (*COUNTERS, "dead letters", "lag msgs", "lag s"):
        table.add_column(name, justify="right")
    for row in report["sources"]:
        table.add_row(
            row["name"],
            *(f"{row[c]:,}" for c in COUNTERS),
            f"{row['dead_letters']:,}",
            show(row.get("lag_messages")),
            show(row.get("lag_seconds")),
        )
        if row["name"] in events:
            counts = events[row["name"]].counts()
            expected = [counts[EXPECTED_KIND[c]] for c in COUNTERS]
            table.add_row(
                "[dim]  expected[/]",
                *(f"[dim]{n:,}[/]" for n in expected),
                f"[dim]{counts['late'] + counts['invalid']:,}[/]",
                "",
                "",
            )
    return table


def count_mismatches(report: Mapping[str, Any], events: Mapping[str, SourceEvents]) -> list[str]:
    """Lines describing every counter that differs from the generator's labels."""
    lines = []
    for row in report["sources"]:
        if row["name"] not in events:
            continue
        counts = events[row["name"]].counts()
        for counter in COUNTERS:
            expected = counts[EXPECTED_KIND[counter]]
            if row[counter] != expected:
                lines.append(f"{row['name']}.{counter}: {row[counter]} (expected {expected})")
    return lines


def write_spine(
    events: Mapping[str, SourceEvents], defs: Definitions, path: Path, rows: int
) -> tuple[Path, list[str]]:
    """A labelled spine over the entity with the most views; returns it and the features."""
    grouped = views_by_entity(defs)
    entity = max(grouped, key=lambda e: (len(grouped[e]), e == "user"))
    views = grouped[entity]
    keys = list(defs.entities[entity].join_keys)
    source_name = max(
        {defs.views[v].source for v in views}, key=lambda s: len(events[s].accepted())
    )
    if "transactions" in {defs.views[v].source for v in views}:
        source_name = "transactions"  # its label depends on the amount: a fraud-like label
    spine = training_spine(events[source_name], defs.sources[source_name], keys, rows)
    table = pa.table(
        {
            **{k: pa.array([r[k] for r in spine], pa.string()) for k in keys},
            "timestamp": pa.array(
                np.array([r["timestamp"].removesuffix("Z") for r in spine], "datetime64[us]")
            ).cast(pa.timestamp("us", tz="UTC")),
            "label": pa.array([r["label"] for r in spine], pa.int8()),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path, [f"{v}:*" for v in views]


def export_preview(path: Path, rows: int = 5, features: int = 5) -> Table:
    """The last rows (the most history behind them) of the training export, with its shape.

    Besides the spine columns it shows, per view, the numeric feature with the most non-zero
    values (up to `features` views).
    """
    table = pq.read_table(path)
    spine = [n for n in table.column_names if ":" not in n]
    numeric = [
        name
        for name in table.column_names
        if ":" in name
        and (
            pa.types.is_integer(table.schema.field(name).type)
            or pa.types.is_floating(table.schema.field(name).type)
        )
    ]
    nonzero = {n: pc.sum(pc.not_equal(table[n], 0)).as_py() or 0 for n in numeric}
    best: dict[str, str] = {}  # per view, its busiest numeric feature
    for name in sorted(numeric, key=lambda n: -nonzero[n]):
        best.setdefault(name.split(":")[0], name)
    picked = set(sorted(best.values(), key=lambda n: -nonzero[n])[:features])
    shown = spine + [n for n in numeric if n in picked]
    preview = Table(
        title=f"training export {path} ({table.num_rows:,} rows × {table.num_columns} columns)",
        title_justify="left",
    )
    for name in shown:
        if name in spine:
            preview.add_column(name, no_wrap=True)
        else:
            preview.add_column(name.replace(":", ":\n"), justify="right")
    last = table.slice(max(0, table.num_rows - rows)).select(shown)
    for record in last.to_pylist():
        preview.add_row(*(show(record[name]) for name in shown))
    return preview
