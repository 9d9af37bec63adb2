"""threadline core: the platform-free conversation engine."""
