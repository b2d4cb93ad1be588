"""Typed state schemas, input/output schemas and reducers of every scenario."""
