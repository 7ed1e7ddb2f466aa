"""Reading a source's offline event log with DuckDB (docs/storage.md).

The log is `<root>/<source>/date=YYYY-MM-DD/*.parquet`. A scan names only the date
partitions that can hold events of the requested time range (partition pruning), reads
them straight from Parquet, and keeps one copy per (source key, event id): the copy
ingested first, which is the copy the stream accepted. Pruning is done on the directory
names here, so DuckDB's own Hive columns stay off (a schema column may be called `date`).
"""

# ruff: noqa: S608 - SQL is built here on purpose; names and strings go through ident()/literal()

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from features.model import Source

DUCK_TYPES: dict[str, str] = {
    "string": "VARCHAR",
    "int": "BIGINT",
    "float": "DOUBLE",
    "bool": "BOOLEAN",
    "timestamp": "TIMESTAMPTZ",
}
US_PER_DAY = 86_400_000_000
TS, INGESTED, EID = "__ts", "__ing", "__eid"  # the engine's names for the log's own columns


def ident(name: str) -> str:
    """A SQL identifier, quoted (definition names may hold any character).

    >>> ident('amount'), ident('a"b')
    ('"amount"', '"a""b"')
    """
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    """A SQL string literal.

    >>> literal("it's")
    "'it''s'"
    """
    return "'" + text.replace("'", "''") + "'"


def day_name(ts_us: int) -> str:
    """The `YYYY-MM-DD` partition of a time in µs (UTC).

    >>> day_name(0), day_name(-1)
    ('1970-01-01', '1969-12-31')
    """
    return datetime.fromtimestamp((ts_us - ts_us % US_PER_DAY) // 1_000_000, tz=UTC).strftime(
        "%Y-%m-%d"
    )


@dataclass(frozen=True)
class LogScan:
    """The deduplicated events of one source's log, as SQL for DuckDB."""

    root: Path
    source: Source

    def partitions(self, ts_from: int | None = None, ts_to: int | None = None) -> list[Path]:
        """The `date=` directories that may hold events in `[ts_from, ts_to]`, oldest first."""
        base = Path(self.root) / self.source.name  # docs/storage.md; no Bytewax import here
        if not base.is_dir():
            return []
        low = day_name(ts_from) if ts_from is not None else ""
        high = day_name(ts_to) if ts_to is not None else "9999"
        out = []
        for path in sorted(base.glob("date=*")):
            day = path.name.removeprefix("date=")
            if low <= day <= high and path.is_dir() and any(path.glob("*.parquet")):
                out.append(path)
        return out

    def sql(
        self,
        columns: Sequence[str],
        ts_from: int | None = None,
        ts_to: int | None = None,
        where: str = "",
        con: Any = None,
    ) -> str:
        """A SELECT of `columns` plus `__ts`, `__ing` (µs) and `__eid`, one row per event.

        Only events with `ts_from <= event time <= ts_to` are read; `where` is an extra
        condition on the raw log columns, applied before deduplication (say, a key filter).
        Given a DuckDB connection, a column no file has yet (added to the schema later)
        reads as null instead of failing.
        """
        wanted = list(dict.fromkeys([*columns, *self.source.key]))
        schema = self.source.columns
        parts = self.partitions(ts_from, ts_to)
        eid_type = DUCK_TYPES[schema[self.source.event_id].dtype]
        if not parts:
            cols = [f"NULL::{DUCK_TYPES[schema[c].dtype]} AS {ident(c)}" for c in wanted]
            cols += [f"NULL::BIGINT AS {TS}", f"NULL::BIGINT AS {INGESTED}"]
            cols += [f"NULL::{eid_type} AS {EID}"]
            return f"SELECT {', '.join(cols)} WHERE false"
        globs = ", ".join(literal(str(p / "*.parquet")) for p in parts)
        conditions = []
        if ts_from is not None:
            conditions.append(f"_event_time >= make_timestamptz({int(ts_from)}::BIGINT)")
        if ts_to is not None:
            conditions.append(f"_event_time <= make_timestamptz({int(ts_to)}::BIGINT)")
        if where:
            conditions.append(f"({where})")
        keys = ", ".join([*(ident(k) for k in self.source.key), "_event_id"])
        files = f"read_parquet([{globs}], hive_partitioning = false, union_by_name = true)"
        present = _present(con, files) if con is not None else set(wanted)
        select = [
            f"{'CAST(' + ident(c) if c in present else 'CAST(NULL'}"
            f" AS {DUCK_TYPES[schema[c].dtype]}) AS {ident(c)}"
            for c in wanted
        ]
        select += [
            f"epoch_us(_event_time) AS {TS}",
            f"epoch_us(_ingested_at) AS {INGESTED}",
            f"CAST(_event_id AS {eid_type}) AS {EID}",
        ]
        return (
            f"SELECT {', '.join(select)} FROM {files}"
            + (f" WHERE {' AND '.join(conditions)}" if conditions else "")
            + f" QUALIFY row_number() OVER (PARTITION BY {keys}"
            " ORDER BY _ingested_at, _event_time) = 1"
        )


def _present(con: Any, files: str) -> set[str]:
    """The columns the log files hold (footers only; nothing is scanned)."""
    return {str(row[0]) for row in con.execute(f"DESCRIBE SELECT * FROM {files}").fetchall()}
