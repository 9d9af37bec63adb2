"""Chat Completions client: request validation, SSE streaming, error mapping."""
