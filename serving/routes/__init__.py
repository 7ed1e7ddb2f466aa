"""HTTP routers, one per area of SPEC §6 (historical lives with the offline engine)."""
