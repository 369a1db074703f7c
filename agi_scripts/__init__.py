"""Classic AGI scripts: one process per call, started by Asterisk (no controller, no Redis)."""
