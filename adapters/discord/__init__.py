"""Discord channel: gateway messages to Inbound, and Discord reply sinks."""
