"""Slack channel: Events API / Socket Mode payloads to Inbound, and Slack reply sinks."""
