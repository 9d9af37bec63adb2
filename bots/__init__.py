"""Settings loading, wiring, the CLI and the process runner."""
