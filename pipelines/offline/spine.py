"""The spine of a point-in-time query: the rows (join keys + `timestamp`) to compute values for.

A spine is read by DuckDB straight from Parquet or CSV (or taken from an Arrow table for
the HTTP endpoint) into a temporary table, never into Python lists. It keeps every column
as it is; the engine adds a row number (output order) and the `timestamp` in µs. The
timestamp may be a timestamp or date column, ISO-8601 strings (UTC unless they carry an
offset), or integers in epoch milliseconds like event timestamps.
"""

# ruff: noqa: S608 - SQL is built here on purpose; names and strings go through ident()/literal()

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from features.errors import ValidationError
from pipelines.offline.log import ident, literal

TIMESTAMP = "timestamp"
SPINE = "__spine"  # the view the engine reads: __rn, __t, then the spine's own columns
ROW, TIME = "__rn", "__t"
_RAW = "__spine_in"
_TIME_TYPES: tuple[str, ...] = (
    "TIMESTAMP", "TIMESTAMP WITH TIME ZONE", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS", "DATE",
)  # fmt: skip
_INT_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER")
_STRING_TYPES = ("VARCHAR",)


class SpineError(ValidationError):
    """A spine cannot be used: unreadable, missing a join key or `timestamp`, bad times."""


def read_function(path: Path, string_columns: Sequence[str] = ()) -> str:
    """The DuckDB table function reading a spine file, chosen by its suffix."""
    suffix = path.suffix.lower()
    quoted = literal(str(path))
    if suffix in (".parquet", ".pq"):
        return f"read_parquet({quoted})"
    if suffix in (".csv", ".tsv", ".txt"):
        types = ", ".join(f"{literal(c)}: 'VARCHAR'" for c in string_columns)
        return f"read_csv({quoted}, header = true" + (f", types = {{{types}}})" if types else ")")
    if suffix in (".jsonl", ".ndjson", ".json"):
        return f"read_json_auto({quoted})"
    msg = f"spine {path}: unknown file type {suffix or '(none)'!r}; use .parquet, .csv or .jsonl"
    raise SpineError(msg)


def load_spine_file(con: Any, path: Path, string_keys: Sequence[str] = ()) -> str:
    """Load a spine file into DuckDB (order kept); returns a description for messages.

    `string_keys` are join keys whose values are strings: a CSV reader must not guess
    them as numbers (`007` would lose its zeros).
    """
    import duckdb

    if not path.is_file():
        msg = f"spine file {path} does not exist"
        raise SpineError(msg)
    where = f"spine {path}"
    try:
        columns = _columns(con, f"SELECT * FROM {read_function(path)}")
        keep = [c for c in string_keys if c in columns]
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {_RAW} AS SELECT * FROM {read_function(path, keep)}"
        )
    except duckdb.Error as exc:
        msg = f"{where}: cannot read it: {str(exc).splitlines()[0]}"
        raise SpineError(msg) from None
    return where


def load_spine_arrow(con: Any, table: Any, where: str = "request rows") -> str:
    """Load an Arrow table as the spine (the historical endpoint's rows)."""
    con.register("__spine_arrow", table)
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {_RAW} AS SELECT * FROM __spine_arrow")
    finally:
        con.unregister("__spine_arrow")
    return where


def _first(con: Any, sql: str) -> tuple[Any, ...] | None:
    """The first row of a query, or None (fully fetched: DuckDB wants results finished)."""
    rows = con.execute(sql).fetchall()
    return tuple(rows[0]) if rows else None


def _columns(con: Any, select: str) -> dict[str, str]:
    """Column name → DuckDB type of a query, without running it."""
    rows = con.execute(f"DESCRIBE {select}").fetchall()
    return {str(r[0]): str(r[1]) for r in rows}


def prepare_spine(con: Any, where: str, required: Sequence[tuple[str, str]]) -> dict[str, str]:
    """Check the loaded spine and define the `__spine` view; returns its column types.

    `required` lists `(join key, what needs it)`; a missing one, a missing or null
    `timestamp`, or a timestamp that is not a time fails with one clear line.
    """
    columns = _columns(con, f"SELECT * FROM {_RAW}")
    missing = [(k, why) for k, why in required if k not in columns]
    if TIMESTAMP not in columns:
        missing.insert(0, (TIMESTAMP, "the time of each row"))
    if missing:
        what = "; ".join(f"{k!r} ({why})" for k, why in missing)
        msg = f"{where} lacks column(s) {what}; it has: {', '.join(columns) or 'no columns'}"
        raise SpineError(msg)
    clash = [c for c in columns if c in (ROW, TIME)]
    if clash:
        msg = f"{where}: column name(s) {', '.join(clash)} are reserved; rename them"
        raise SpineError(msg)
    time_expr = _time_expr(columns[TIMESTAMP], where)
    _check_times(con, columns[TIMESTAMP], where)
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW {SPINE} AS SELECT rowid AS {ROW}, {time_expr} AS {TIME}, *"
        f" FROM {_RAW}"
    )
    return columns


def _time_expr(dtype: str, where: str) -> str:
    col = ident(TIMESTAMP)
    if dtype == "TIMESTAMP WITH TIME ZONE":
        return f"epoch_us({col})"
    if dtype in _TIME_TYPES:
        return f"epoch_us(CAST({col} AS TIMESTAMP))"
    if dtype in _INT_TYPES:
        return f"CAST({col} AS BIGINT) * 1000"
    if dtype in _STRING_TYPES:
        return f"epoch_us(CAST({col} AS TIMESTAMPTZ))"
    msg = (
        f"{where}: column 'timestamp' has type {dtype}; expected a timestamp, ISO-8601 strings"
        " or epoch milliseconds"
    )
    raise SpineError(msg)


def _check_times(con: Any, dtype: str, where: str) -> None:
    """Fail on the first row whose timestamp is null or not a time."""
    col = ident(TIMESTAMP)
    null = _first(con, f"SELECT rowid FROM {_RAW} WHERE {col} IS NULL LIMIT 1")
    if null is not None:
        msg = f"{where}: row {int(null[0]) + 1} has no timestamp"
        raise SpineError(msg)
    if dtype in _STRING_TYPES:
        bad = _first(
            con,
            f"SELECT rowid, {col} FROM {_RAW} WHERE TRY_CAST({col} AS TIMESTAMPTZ) IS NULL LIMIT 1",
        )
        if bad is not None:
            msg = (
                f"{where}: row {int(bad[0]) + 1} has timestamp {bad[1]!r}, which is not an"
                " ISO-8601 time (e.g. 2026-01-01T10:00:00Z)"
            )
            raise SpineError(msg)


def spine_range(con: Any) -> tuple[int, int, int] | None:
    """`(rows, earliest, latest)` time of the spine in µs, or None when it is empty."""
    row = _first(con, f"SELECT count(*), min({TIME}), max({TIME}) FROM {SPINE}")
    if row is None or not row[0]:
        return None
    return int(row[0]), int(row[1]), int(row[2])
