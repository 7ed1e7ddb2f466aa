"""Sinks of the stream pipeline: Redis tiles and stats, the Parquet log, dead letters."""
