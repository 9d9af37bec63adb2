"""Telegram channel: Bot API updates to Inbound, and Telegram reply sinks."""
