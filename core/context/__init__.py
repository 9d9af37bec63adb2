"""Context window: token counting and choosing the history that fits."""
