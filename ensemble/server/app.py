"""The app `ensemble serve` mounts through langgraph.json `http.app`.

Its middleware, the request gate, wraps every route the LangGraph server mounts (custom
middleware runs outside LangGraph's own CORS and auth layers); its routes are `POST /events`
(`ensemble.server.events`) and the browser console under `/console` (`ensemble.server.console`).
It is a FastAPI
app because LangGraph merges a custom app's OpenAPI paths into its own: a FastAPI app with no
routes of its own contributes none, so `/openapi.json` keeps LangGraph's full description
(a plain Starlette app would replace it with one that has no path parameters).
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.middleware import Middleware

from ensemble.server.console.routes import router as console
from ensemble.server.events import router as events
from ensemble.server.gate import Gate

app = FastAPI(
    title="Ensemble",
    docs_url=None,
    redoc_url=None,
    openapi_url=None,
    middleware=[Middleware(Gate)],
)
app.include_router(events)
app.include_router(console)
