"""Console channel: a terminal as a chat platform."""
