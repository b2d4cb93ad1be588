"""The browser console of `ensemble serve`: threads, a thread's graph and timeline, the inbox.

Static files (no data) and a small JSON API under `/console`, behind the same gate as every
other route: keys, roles, the origin rule. The page acts through LangGraph's own API with the
person's key; what that API does not give (schemas, the drawn graph, the audit trail's
timeline, costs and sizes) comes from `/console/api`.
"""
