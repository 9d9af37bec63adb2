"""Local fake servers and platform-like sinks for tests."""
