"""Tests of the slack channel against a local fake slack server."""
