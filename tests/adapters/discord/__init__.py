"""Tests of the discord channel against a local fake discord server."""
