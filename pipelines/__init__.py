"""How features are computed: the Bytewax stream dataflow, sources, sinks, backfill, export."""
