"""Streaming policy: sink protocol, pacing, splitting and the stream driver."""
