"""The operator's rules for a served Ensemble: hosts, origins, open routes, models and limits.

`ensemble serve` checks its flags into one `ServerPolicy` and hands it to the server process as
JSON in `ENSEMBLE_SERVER_POLICY`; the request gate (`ensemble.server.gate`) and the auth handlers
read it once. Nothing a client sends can change it.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from functools import cache
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ensemble import settings
from ensemble.errors import EnsembleError

if TYPE_CHECKING:
    from ensemble.workspace import Workspace

POLICY_ENV = "ENSEMBLE_SERVER_POLICY"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
"""The names a loopback server answers to (with its port)."""
ALWAYS_OPEN = ("/ok",)
"""Routes that answer without a key: the health check only, unless the operator opens more."""
DEFAULT_RUN_SECONDS = 3600.0
"""A run stops after this long unless the operator says otherwise (`--run-seconds`)."""
BUDGET_NAMES = ("calls", "tokens", "seconds")
"""A server's ceilings; `cost` needs prices, which a served run does not have."""


class PolicyError(EnsembleError):
    """An operator's serve flag is malformed."""


@dataclass(frozen=True)
class ServerPolicy:
    """What a served Ensemble lets clients do; every field is the operator's choice."""

    port: int = 0
    """The port the server listens on; a `Host` header must carry it."""
    hosts: tuple[str, ...] = ()
    """Host names beyond the loopback names that the server answers for (`--allow-host`)."""
    origins: tuple[str, ...] = ()
    """Web origins whose pages may call the API (`--allow-origin`); none by default."""
    open_paths: tuple[str, ...] = ALWAYS_OPEN
    """Routes that need no key when keys are set (`/ok` and `--open-route`)."""
    models: tuple[str, ...] = ()
    """Model specs a client may choose (`--allow-model`), besides the server's default model."""
    default_model: str = field(default_factory=settings.default_model_spec)
    """The server's own model spec (operators may give it options such as latency)."""
    max_runs_per_user: int = 4
    """Runs at once on one user's threads; one more is refused with 429."""
    run_seconds: float = DEFAULT_RUN_SECONDS
    """Wall-clock seconds one run may take before the server stops it."""
    budget_ceiling: Mapping[str, float] = field(default_factory=dict)
    """The most a thread may spend per budget name; a client may ask for less, never more."""

    def to_env(self) -> str:
        """The JSON the server process reads back with `from_env`."""
        data = asdict(self)
        data["budget_ceiling"] = dict(self.budget_ceiling)
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServerPolicy:
        """The policy `ensemble serve` handed over; the defaults when none was (plain dev)."""
        raw = (os.environ if environ is None else environ).get(POLICY_ENV, "")
        if not raw.strip():
            return cls()
        data = json.loads(raw)
        for name in ("hosts", "origins", "open_paths", "models"):
            data[name] = tuple(data.get(name) or ())
        return cls(**data)

    def allowed_hosts(self) -> frozenset[str]:
        """Every `Host` header value the server accepts (names with and without the port)."""
        names = [*LOOPBACK_NAMES, *self.hosts]
        port = f":{self.port}" if self.port else ""
        return frozenset(n.lower() + port for n in names) | frozenset(n.lower() for n in self.hosts)

    def host_allowed(self, host: str | None) -> bool:
        """True when `host` (a request's `Host` header) names this server."""
        if not host:
            return False
        if not self.port:  # a server started without a port in its policy (plain dev)
            return host.lower().rsplit(":", 1)[0] in {n.lower() for n in LOOPBACK_NAMES}
        return host.lower() in self.allowed_hosts()

    def origin_allowed(self, origin: str, host: str) -> bool:
        """True for an origin the operator named, or the server's own (same-origin) address."""
        return origin in self.origins or origin in (f"http://{host}", f"https://{host}")

    def client_models(self) -> frozenset[str]:
        """The model specs a client may name: the server's default and the operator's list."""
        return frozenset({self.default_model, *self.models})

    def describe(self) -> list[str]:
        """The lines `ensemble serve` prints about hosts, limits and models."""
        hosts = ", ".join(sorted(self.allowed_hosts())) if self.port else "loopback names"
        models = ", ".join(sorted(self.client_models()))
        ceiling = ", ".join(f"{k}={v:g}" for k, v in sorted(self.budget_ceiling.items()))
        return [
            f"Hosts:           {hosts} (requests naming another Host are refused)",
            f"Client models:   {models} (no testing options such as ?latency)",
            f"Limits:          {self.max_runs_per_user} runs at once per user, "
            f"{self.run_seconds:g} s per run, budget ceiling: {ceiling or 'none'}",
        ]


def check_origin(origin: str) -> str:
    """An operator's `--allow-origin` value, normalised; refuse anything but scheme://host."""
    parsed = urlsplit(origin)
    if (
        origin == "*"
        or parsed.scheme not in ("http", "https")
        or not parsed.netloc
        or parsed.path not in ("", "/")
        or parsed.query
        or parsed.fragment
    ):
        raise PolicyError(
            f"--allow-origin takes an origin like https://app.example, got {origin!r}"
        )
    return origin.rstrip("/")


def check_host(host: str) -> str:
    """An operator's `--allow-host` value: a DNS name or address, optionally with a port."""
    name = host.strip().lower()
    bare = name.rsplit(":", 1)[0] if name.count(":") == 1 else name
    try:
        ipaddress.ip_address(bare.strip("[]"))
        return name
    except ValueError:
        pass
    if not re.fullmatch(r"[a-z0-9-]+(\.[a-z0-9-]+)*", bare):
        raise PolicyError(f"--allow-host takes a host name like api.example.org, got {host!r}")
    return name


def check_open_path(path: str) -> str:
    """An operator's `--open-route` value: one of the routes that may answer without a key."""
    if path not in OPENABLE:
        raise PolicyError(f"--open-route takes one of {', '.join(OPENABLE)}, got {path!r}")
    return path


OPENABLE = ("/metrics", "/docs", "/openapi.json", "/info")
"""Read-only meta routes an operator may open to callers without a key."""


def parse_budget(items: Iterable[str]) -> dict[str, float]:
    """`--max-budget calls=200` values -> {"calls": 200.0}; refuse unknown names and values."""
    ceiling: dict[str, float] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or name not in BUDGET_NAMES:
            raise PolicyError(
                f"--max-budget takes NAME=VALUE with NAME one of {', '.join(BUDGET_NAMES)}, "
                f"got {item!r}"
            )
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if not value > 0:
            raise PolicyError(f"--max-budget {name} must be a positive number, got {raw!r}")
        ceiling[name] = value
    return ceiling


@cache
def served_workspace() -> Workspace:
    """The server's workspace (database, corpus and output roots), read once from its settings.

    A served client chooses no folder outside the operator's roots; with no roots set it reads
    only the default corpus and publishes only into the default folder.
    """
    from ensemble.workspace import from_environment

    return from_environment(served=True)
