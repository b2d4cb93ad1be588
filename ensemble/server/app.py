"""The Starlette app `ensemble serve` mounts through langgraph.json `http.app`.

It adds no routes: its middleware, the request gate, wraps every route the LangGraph server
mounts (custom middleware runs outside LangGraph's own CORS and auth layers).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware

from ensemble.server.gate import Gate

app = Starlette(middleware=[Middleware(Gate)])
