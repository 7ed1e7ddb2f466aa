"""Running the point-in-time engine: training exports to Parquet and historical vectors.

`export_training_set` streams spine file → DuckDB → Parquet file without holding either
in Python (DuckDB spills to disk past its memory limit), reporting progress from DuckDB's
own query progress. `historical_values` answers `POST /v1/features/historical` with the
same query over at most a few thousand rows given as JSON.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from features.durations import iso, to_us
from features.errors import StorageError, ValidationError
from features.model import Definitions
from pipelines.offline.engine import PointInTimeQuery, connect, required_keys, string_keys
from pipelines.offline.log import literal
from pipelines.offline.spine import (
    TIMESTAMP,
    load_spine_arrow,
    load_spine_file,
    prepare_spine,
    spine_range,
)

Progress = Callable[[float], None]


UTC_US = pa.timestamp("us", tz="UTC")
_ARROW: dict[str, Any] = {
    "string": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": UTC_US,
}


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote."""

    out: Path
    rows: int
    features: list[str]
    seconds: float


def _bounds(con: Any) -> tuple[int, int, int]:
    found = spine_range(con)
    return found if found is not None else (0, 0, 0)


def run_with_progress(con: Any, sql: str, progress: Progress | None) -> None:
    """Execute `sql`, calling `progress(percent)` from DuckDB's progress while it runs."""
    if progress is None:
        con.execute(sql)
        return
    con.execute("SET enable_progress_bar = true")
    con.execute("SET enable_progress_bar_print = false")
    failure: list[BaseException] = []

    def work() -> None:
        try:
            con.execute(sql)
        except BaseException as exc:  # re-raised in the calling thread
            failure.append(exc)

    worker = threading.Thread(target=work, name="rillet-export", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(0.2)
        done = con.query_progress()
        if done is not None and done >= 0:
            progress(min(float(done), 99.9))
    if failure:
        raise failure[0]
    progress(100.0)


def export_training_set(
    defs: Definitions,
    refs: Sequence[str],
    spine: Path,
    out: Path,
    root: Path,
    mode: str = "event_time",
    *,
    progress: Progress | None = None,
    memory_limit: str = "2GB",
    threads: int | None = None,
) -> ExportResult:
    """Write the spine with one `view:feature` column per feature, in spine order, to `out`.

    The file appears atomically (written to a `.tmp` sibling, then renamed).
    """
    import duckdb

    started = time.perf_counter()
    query = PointInTimeQuery(defs, refs, root, mode)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    con = connect(memory_limit, threads, temp_dir=out.parent / ".rillet-duckdb-tmp")
    try:
        where = load_spine_file(con, Path(spine), string_keys(query.groups))
        columns = prepare_spine(con, where, required_keys(defs, query.groups))
        rows, t_min, t_max = _bounds(con)
        sql = query.sql(con, t_min, t_max, list(columns))
        copy = f"COPY ({sql}) TO {literal(str(tmp))} (FORMAT parquet, COMPRESSION zstd)"
        try:
            run_with_progress(con, copy, progress)
        except duckdb.Error as exc:
            msg = f"export failed: {str(exc).splitlines()[0]}"
            raise StorageError(msg) from None
        os.replace(tmp, out)
    finally:
        con.close()
        tmp.unlink(missing_ok=True)
    return ExportResult(out, rows, query.outputs, time.perf_counter() - started)


MIN_US, MAX_US = -62_135_596_800_000_000, 253_402_300_799_999_999  # years 1 through 9999
INT64 = range(-(2**63), 2**63)


def _key_value(value: Any, dtype: str) -> Any:
    """A join-key value coerced to its log dtype; None when it cannot name an entity."""
    if value is None or isinstance(value, dict | list):
        return None
    if dtype == "string":
        return value if isinstance(value, str) else None if isinstance(value, bool) else str(value)
    if dtype == "float":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return float(value) if ok else None
    if dtype == "bool":
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        return value if isinstance(value, bool) else None
    out: int | None = None
    try:
        if dtype == "timestamp":
            out = _time_us(value)
        elif isinstance(value, float):
            out = int(value) if value.is_integer() else None
        elif not isinstance(value, bool):
            out = int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return out if out is not None and out in INT64 else None


def _time_us(value: Any) -> int:
    """A row timestamp in µs (ISO-8601 or epoch ms); ValueError if not one or out of range."""
    us = to_us(value)
    if not MIN_US <= us <= MAX_US:
        msg = f"timestamp {value!r} is out of range"
        raise ValueError(msg)
    return us


def rows_table(query: PointInTimeQuery, rows: Sequence[Mapping[str, Any]]) -> Any:
    """The request rows as an Arrow spine: typed join keys and a UTC `timestamp` column."""
    dtypes: dict[str, str] = {}
    for group in query.groups:
        for key in group.join_keys:
            dtypes.setdefault(key, group.source.columns[key].dtype)
    problems: list[dict[str, Any]] = []
    times: list[int | None] = []
    for i, row in enumerate(rows):
        reasons = [f"missing join key {k!r}" for k in dtypes if row.get(k) is None]
        stamp = row.get(TIMESTAMP)
        when = None
        if stamp is None:
            reasons.append("missing 'timestamp'")
        else:
            try:
                when = _time_us(stamp)
            except (TypeError, ValueError, OverflowError):
                reasons.append(f"timestamp {stamp!r} is not ISO-8601 or epoch milliseconds")
        if reasons:
            problems.append({"index": i, "reasons": reasons})
        times.append(when)
    if problems:
        first = problems[0]
        msg = (
            f"row {first['index']}: {'; '.join(first['reasons'])}"
            f" ({len(problems)} row(s) with problems, see details)"
        )
        raise ValidationError(msg, details=problems)
    arrays = {
        k: pa.array([_key_value(r.get(k), t) for r in rows], type=_ARROW[t])
        for k, t in dtypes.items()
    }
    arrays[TIMESTAMP] = pa.array(times, type=UTC_US)
    return pa.table(arrays)


def _plain(value: Any) -> Any:
    """A DuckDB result value as JSON: times as ISO-8601 UTC, lists element-wise."""
    if isinstance(value, datetime):
        return iso(to_us(value))
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def historical_values(
    defs: Definitions,
    refs: Sequence[str],
    rows: Sequence[Mapping[str, Any]],
    root: Path,
    mode: str = "event_time",
    *,
    memory_limit: str = "512MB",
    threads: int | None = 2,
) -> tuple[list[str], list[dict[str, Any]]]:
    """The features (expanded) and, per row in order, `{view:feature: value}`."""
    import duckdb

    query = PointInTimeQuery(defs, refs, root, mode)
    table = rows_table(query, rows)
    con = connect(memory_limit, threads)
    try:
        where = load_spine_arrow(con, table)
        columns = prepare_spine(con, where, required_keys(defs, query.groups))
        _, t_min, t_max = _bounds(con)
        outs = query.outputs
        result = con.sql(query.sql(con, t_min, t_max, list(columns))).to_arrow_table()
    except duckdb.Error as exc:
        msg = f"reading the offline log under {root} failed: {str(exc).splitlines()[0]}"
        raise StorageError(msg) from None
    finally:
        con.close()
    data = result.select(outs).to_pydict()
    values = [{o: _plain(data[o][i]) for o in outs} for i in range(result.num_rows)]
    return list(outs), values
