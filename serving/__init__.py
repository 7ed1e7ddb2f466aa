"""How features are served: the FastAPI app, online reads, the push API and the CLI."""
