"""Tests of the telegram channel against a local fake telegram server."""
