"""Platform adapters: each translates between one platform and core."""
