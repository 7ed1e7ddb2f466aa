"""The `rillet` command line; each command group lives in its own module, loaded lazily."""
