"""The model layer: one factory turns a model spec into a LangChain chat model.

Specs:
- `offline` (optionally `offline?latency=0.2`): the deterministic extractive model, no network.
- `openai:<model>`: `ChatOpenAI`; `OPENAI_BASE_URL` points it at any OpenAI-compatible server.
- `local` / `local:PATH.gguf`: a GGUF model served by llama-cpp-python on 127.0.0.1 (started at
  the first call, or the server named by `ENSEMBLE_LOCAL_BASE_URL`); see `ensemble.models.local`.
- any name given to `register_model`: a chat model of your own (another provider, a test fake).
"""

from __future__ import annotations

import os
import sys
from functools import lru_cache
from urllib.parse import parse_qsl

from langchain_core.language_models import BaseChatModel

from ensemble.context import Context
from ensemble.db import DatabaseLike
from ensemble.errors import ModelSpecError

SPEC_FORMS = (
    "offline, offline?latency=SECONDS, openai:<model>, local, local:/path/to/model.gguf, "
    "or a registered name"
)

_registered: dict[str, BaseChatModel] = {}


def register_model(name: str, model: BaseChatModel) -> None:
    """Make `name` a model spec that returns `model` (any LangChain chat model)."""
    if not name or ":" in name or "?" in name or name in ("offline", "local"):
        raise ModelSpecError(f"cannot register a model as {name!r}: pick a plain name")
    _registered[name] = model


def unregister_model(name: str) -> None:
    """Forget a name given to `register_model`."""
    _registered.pop(name, None)


def stop_local_servers() -> None:
    """Stop the local model servers this process started; cheap when it started none.

    Entry points call it when they end (atexit would too, but not before a long-lived caller
    such as a notebook or the test suite moves on). `ensemble.models.llama_server` is only
    looked up, never imported, so a command that used no local model pays no import for it.
    """
    module = sys.modules.get("ensemble.models.llama_server")
    if module is not None:
        module.stop_local_servers()


def chat_model_for(
    context: Context, role: str, spec: str | None = None, *, db: DatabaseLike
) -> BaseChatModel:
    """Return the model that plays `role` (or `spec`): behind the cache, budget and breakers.

    Its fallbacks, the run's timeout and retries come from the run context; `db` is the
    workspace's database, where the cache, the budget's ledger and the audit trail live (see
    `ensemble.resilience.guard`).
    """
    from ensemble.resilience.guard import GuardedChatModel

    chain = context.chain_for(role, spec)
    timeout, retries = context.timeout_for(role), context.model_retries
    return GuardedChatModel(
        role=role,
        chain=chain,
        models=tuple(chat_model(s, timeout=timeout) for s in chain),
        retries=retries,
        db=str(db),
        budget={str(k): float(v) for k, v in context.budget.items()},
        prices={k: {str(n): float(p) for n, p in v.items()} for k, v in context.prices.items()},
        use_cache=context.cache,
    )


def chat_model(spec: str, *, timeout: float | None = None) -> BaseChatModel:
    """Return a (cached) chat model for `spec`; raise `ModelSpecError` on an unknown spec.

    `timeout` (seconds per request) applies to models that call a server. Their clients never
    retry: the guard (`ensemble.resilience.guard`) retries transient faults, so it counts and
    audits every request. Registered and offline models ignore it.
    """
    spec = spec.strip()
    if spec in _registered:
        return _registered[spec]
    return _build(spec, timeout)


def validate_spec(spec: str) -> str:
    """Check a spec without contacting any service; return it normalised."""
    chat_model(spec)
    return spec.strip()


DEFAULT_TIMEOUT = 120.0


@lru_cache(maxsize=64)
def _build(spec: str, timeout: float | None = None) -> BaseChatModel:
    name, _, query = spec.partition("?")
    options = dict(parse_qsl(query))
    if name == "offline":
        return _offline(options)
    seconds = DEFAULT_TIMEOUT if timeout is None else timeout
    if name.startswith("openai:") and name[len("openai:") :]:
        return _openai(name[len("openai:") :], options, seconds)
    if name == "local" or name.startswith("local:"):
        from ensemble.models.local import build_local_model

        path = name[len("local:") :] if ":" in name else None
        return build_local_model(path, options, timeout=max(seconds, 1.0))
    raise ModelSpecError(f"unknown model spec {spec!r}; expected one of: {SPEC_FORMS}")


def _offline(options: dict[str, str]) -> BaseChatModel:
    from ensemble.offline import OfflineChatModel

    unknown = set(options) - {"latency"}
    if unknown:
        raise ModelSpecError(f"offline model has no option(s) {sorted(unknown)}; known: latency")
    try:
        latency = float(options.get("latency", "0"))
    except ValueError:
        raise ModelSpecError(
            f"offline latency must be a number, got {options['latency']!r}"
        ) from None
    if latency < 0:
        raise ModelSpecError("offline latency must not be negative")
    return OfflineChatModel(latency=latency)


def _openai(model: str, options: dict[str, str], timeout: float) -> BaseChatModel:
    from langchain_openai import ChatOpenAI

    base_url = os.environ.get("OPENAI_BASE_URL") or None
    api_key = os.environ.get("OPENAI_API_KEY")
    if not api_key and not base_url:
        raise ModelSpecError(
            f"model openai:{model} needs OPENAI_API_KEY (or OPENAI_BASE_URL for a local server)"
        )
    return ChatOpenAI(
        model=model,
        temperature=float(options.get("temperature", "0")),
        base_url=base_url,
        api_key=api_key or "not-needed",  # type: ignore[arg-type]
        timeout=timeout,
        max_retries=0,  # the guard retries, where budgets, breakers and the audit see it
        stream_usage=True,
    )
