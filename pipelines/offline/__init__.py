"""The offline side: point-in-time feature values from the Parquet event log with DuckDB.

`log` reads a source's log (deduplicated, pruned by date), `spine` checks and loads the
rows to compute values for, `engine` writes the SPEC §4 windows as SQL, and `export`
runs it for `rillet export` and `POST /v1/features/historical`.
"""
