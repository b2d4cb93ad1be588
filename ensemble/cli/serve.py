"""`ensemble serve`: every scenario behind the LangGraph dev server, on the project's database.

The server is `langgraph dev` (in-memory runtime) serving every registered scenario, with a
langgraph.json made from the installed package (`ensemble.server.config`). Its checkpoints go
to the same SQLite file the CLI uses (`ENSEMBLE_DB` -> `ensemble.server.checkpointer`),
so a thread started through the server can be listed, shown, resumed or forked with `ensemble`
and the other way round. The server's own thread and run records (`.langgraph_api/`) live in a
folder beside that database, never in the project checkout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import os
import signal
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ensemble import settings
from ensemble.cli import add_if_missing
from ensemble.cli.doctor import missing_modules
from ensemble.db import Database, DatabaseLike, database
from ensemble.errors import EnsembleError
from ensemble.server.keys import KEYS_FILE_ENV, load_keys
from ensemble.server.policy import (
    ALWAYS_OPEN,
    DEFAULT_RUN_SECONDS,
    OPENABLE,
    POLICY_ENV,
    PolicyError,
    ServerPolicy,
    check_host,
    check_origin,
    parse_budget,
)

HOST = "127.0.0.1"
"""Where the server listens unless the operator configures keys and names another address."""

DEFAULT_PORT = 2024
DEFAULT_JOBS = 4
"""Runs executed at once; the dev server's own default (1) makes every client wait in line."""

MAX_BODY_BYTES = 2 * 1024 * 1024
"""Largest request body the server reads (LangGraph's own default is 300 MB)."""

STOP_GRACE_SECONDS = 10.0
"""How long a stopping server may take to finish before it is killed."""

CONFIG_NAME = "langgraph.json"
SERVER_DIR = "langgraph-server"
"""Folder beside the database where the server runs and keeps its `.langgraph_api/` records."""

OFFLINE_ENV = {"LANGGRAPH_CLI_NO_ANALYTICS": "1", "LANGGRAPH_NO_VERSION_CHECK": "true"}
"""No analytics and no PyPI version check: the server must start without network access."""


class ServeError(EnsembleError):
    """The server cannot be started (no langgraph.json, port taken, missing package)."""


def add_serve_parser(
    subparsers: argparse._SubParsersAction, parents: Sequence[argparse.ArgumentParser]
) -> argparse.ArgumentParser:
    """Add `ensemble serve` to the CLI; `--db`/`--model` are added unless a parent has them."""
    serve = subparsers.add_parser(
        "serve",
        parents=list(parents),
        help="serve every scenario with the LangGraph dev server",
        description="Run `langgraph dev` on 127.0.0.1 with checkpoints in the Ensemble database.",
    )

    def repeatable(flag: str, **options: Any) -> None:
        serve.add_argument(flag, action="append", default=[], **options)

    serve.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})"
    )
    serve.add_argument("--jobs", type=int, default=DEFAULT_JOBS,
        help=f"runs executed at once (default {DEFAULT_JOBS})")  # fmt: skip
    serve.add_argument(
        "--reload", action="store_true", help="restart the server when source files change"
    )
    add_if_missing(
        serve, "--db", help=f"SQLite database (default: $ENSEMBLE_DB or {settings.DEFAULT_DB})"
    )
    add_if_missing(
        serve, "--model", help="default model spec of server runs (default: $ENSEMBLE_MODEL)"
    )
    repeatable("--corpus-root", dest="corpus_roots", type=Path, metavar="DIR",
        help="a folder whose subfolders clients may use as a corpus (repeatable; default: none, "
        "only Python's documentation; also $ENSEMBLE_CORPUS_ROOTS)")  # fmt: skip
    repeatable("--output-root", dest="output_roots", type=Path, metavar="DIR",
        help="a folder clients may publish into (repeatable; default: only published/ beside "
        "the database; also $ENSEMBLE_OUTPUT_ROOTS)")  # fmt: skip
    serve.add_argument("--keys", type=Path, metavar="FILE",
        help="API keys file; every request then needs a key, each key is a user "
        "(also $ENSEMBLE_API_KEYS_FILE)")  # fmt: skip
    repeatable("--allow-origin", dest="allow_origins", metavar="ORIGIN",
        help="a web origin whose pages may call the API, e.g. https://smith.langchain.com "
        "(repeatable; default: none, every other origin is refused)")  # fmt: skip
    serve.add_argument("--host", default=HOST,
        help=f"address to listen on (default {HOST}; another address needs --keys)")  # fmt: skip
    repeatable("--allow-host", dest="allow_hosts", metavar="NAME",
        help="a host name clients may use in their Host header besides the loopback names "
        "(repeatable; default: none, so a DNS-rebinding page is refused)")  # fmt: skip
    repeatable("--open-route", dest="open_routes", choices=OPENABLE,
        help="with --keys, a read-only route that answers without a key (repeatable; "
        "default: only /ok)")  # fmt: skip
    repeatable("--allow-model", dest="allow_models", metavar="SPEC",
        help="a model spec clients may choose besides the server's default (repeatable; "
        "model options such as ?latency= are never a client's)")  # fmt: skip
    serve.add_argument("--max-runs-per-user", type=int, default=None, metavar="N",
        help="runs at once on one user's threads; more are refused with 429 "
        "(default: --jobs without keys, half of --jobs with keys)")  # fmt: skip
    serve.add_argument("--run-seconds", type=float, default=DEFAULT_RUN_SECONDS, metavar="SECONDS",
        help=f"wall-clock limit of one run; the server stops it after that "
        f"(default {DEFAULT_RUN_SECONDS:g})")  # fmt: skip
    repeatable("--max-budget", metavar="NAME=VALUE",
        help="the most one thread may spend (calls, tokens, seconds); applies to every "
        "thread, and a client may ask for less but never more (repeatable)")  # fmt: skip
    repeatable("--subscriptions", type=Path, metavar="PATH",
        help="run the event dispatcher in this server with these subscription files or folders "
        "(repeatable; its runs keep to the server's corpus and output roots)")  # fmt: skip
    repeatable("--watch", type=Path, metavar="DIR",
        help="with --subscriptions: publish document.changed for documents added or changed in "
        "DIR (repeatable)")  # fmt: skip
    return serve


async def cmd_serve(args: argparse.Namespace) -> int:
    """`ensemble serve`: run the dev server until it stops or SIGINT/SIGTERM arrives."""
    from ensemble.models import validate_spec
    from ensemble.models.local import warm_server

    db = database(getattr(args, "db", None))
    if not db.is_postgres:
        db = database(db.sqlite_path.resolve())
    model = getattr(args, "model", None)
    model = validate_spec(model) if model else None
    if args.jobs < 1:
        raise ServeError(f"--jobs must be at least 1, got {args.jobs}")
    access = server_access(args, port=args.port, model=model)
    dispatcher = served_dispatcher(args, db, access, model)
    _check_port(args.port, access.host)
    if missing := missing_modules("langgraph_cli", "langgraph_api"):
        raise ServeError(
            f"{', '.join(missing)} not installed; install with: pip install 'langgraph-cli[inmem]'"
        )
    workdir = (
        settings.DEFAULT_DB.parent.resolve() if db.is_postgres else db.sqlite_path.parent
    ) / SERVER_DIR
    workdir.mkdir(parents=True, exist_ok=True)
    config = server_config(workdir, allow_origins=access.policy.origins)

    url = server_url(args.port, access.host)
    print(f"Ensemble server: {url}", flush=True)
    print(f"Database:        {db}", flush=True)
    print(f"Server records:  {workdir / '.langgraph_api'}", flush=True)
    for line in access.describe():
        print(line, flush=True)
    if dispatcher is not None:
        names = ", ".join(s.name for s in dispatcher.subscriptions)
        print(f"Events:          POST {url}/events -> {names}", flush=True)
    print(f"API docs:        {url}/docs   (Ctrl-C stops)", flush=True)
    env = server_env(db, model, access=access)
    local_url = warm_server(model or settings.default_model_spec())
    if local_url:  # one warm local model shared by every run of the server
        env["ENSEMBLE_LOCAL_BASE_URL"] = local_url
        print(f"Local model:     {local_url}", flush=True)
    process = await asyncio.create_subprocess_exec(
        *server_command(
            args.port, reload=args.reload, jobs=args.jobs, config=config, host=access.host
        ),
        cwd=str(workdir),
        env=env,
        start_new_session=True,  # the terminal's Ctrl-C reaches us once; we forward it once
    )
    if dispatcher is None:
        return await supervise(process)
    stop_dispatching = asyncio.Event()
    dispatching = asyncio.create_task(dispatcher.run(stop_dispatching))
    try:
        return await supervise(process)
    finally:
        stop_dispatching.set()
        try:
            await dispatching
        except EnsembleError as error:
            print(f"ensemble: the event dispatcher stopped: {error}", file=sys.stderr)


def served_dispatcher(
    args: argparse.Namespace, db: Database, access: ServerAccess, model: str | None = None
) -> Any:
    """The event dispatcher `--subscriptions` asks for, held to the server's folders.

    Events reach it from API clients, so the runs it starts may read and publish only where the
    server's own runs may (the corpus and output roots; none named: the defaults only). They use
    the server's `--model` unless a subscription names its own.

    Raises:
        SubscriptionError: A subscription file is wrong (named with its line), before the
            server starts.
    """
    if not args.subscriptions:
        if args.watch:
            raise ServeError("--watch needs --subscriptions (the dispatcher does the watching)")
        return None
    from ensemble.events.dispatcher import Dispatcher
    from ensemble.events.subscriptions import load_subscriptions
    from ensemble.workspace import Workspace

    for folder in args.watch:
        if not folder.is_dir():
            raise ServeError(f"--watch {folder} is not a folder")
    return Dispatcher(
        db=db,
        workspace=Workspace(
            db=db, corpus_roots=access.corpus_roots, output_roots=access.output_roots
        ),
        subscriptions=load_subscriptions(
            args.subscriptions, defaults={"model": model} if model else None
        ),
        watch=tuple(folder.resolve() for folder in args.watch),
        say=lambda line: print(line, flush=True),
    )


@dataclass(frozen=True)
class ServerAccess:
    """Who may reach the server and what they may read: the operator's choices, checked."""

    host: str = HOST
    keys_file: Path | None = None
    corpus_roots: tuple[Path, ...] = ()
    output_roots: tuple[Path, ...] = ()
    policy: ServerPolicy = field(default_factory=ServerPolicy)
    """Hosts, origins, open routes, client models and limits (`ensemble.server.policy`)."""

    def describe(self) -> list[str]:
        """The lines `ensemble serve` prints at start, so the operator sees what is open."""
        open_routes = ", ".join(self.policy.open_paths)
        users = (
            f"API keys from {self.keys_file} (every route needs one except {open_routes})"
            if self.keys_file
            else "UNAUTHENTICATED: anyone on this machine can use it (listening on loopback only)"
        )
        roots = ", ".join(map(str, self.corpus_roots)) or "none (only Python's documentation)"
        origins = ", ".join(self.policy.origins) or "none (pages of every other origin are refused)"
        return [
            f"Access:          {users}",
            f"Corpus roots:    {roots}",
            f"Web origins:     {origins}; private-network access is never granted",
            *self.policy.describe(),
        ]


def server_access(
    args: argparse.Namespace, *, port: int = 0, model: str | None = None
) -> ServerAccess:
    """Check the serve flags (and their environment fallbacks) and return what they allow.

    Raises:
        ServeError: A missing keys file or corpus root, a bad origin, host, limit or budget, or
            a non-loopback address without keys.
    """
    keys = args.keys or (Path(p) if (p := os.environ.get(KEYS_FILE_ENV, "").strip()) else None)
    if keys is not None:
        keys = keys.expanduser().resolve()
        load_keys(keys)  # fail now, with the file and entry, rather than in the server's log
    roots = operator_folders("--corpus-root", args.corpus_roots, settings.corpus_roots())
    outputs = operator_folders(
        "--output-root", getattr(args, "output_roots", []), settings.output_roots()
    )
    host = args.host
    if not _is_loopback(host) and keys is None:
        raise ServeError(f"--host {host} would expose an unauthenticated server; add --keys FILE")
    jobs = getattr(args, "jobs", DEFAULT_JOBS)
    per_user = getattr(args, "max_runs_per_user", None)
    if per_user is None:
        per_user = jobs if keys is None else max(1, jobs // 2)
    if per_user < 1:
        raise ServeError(f"--max-runs-per-user must be at least 1, got {per_user}")
    run_seconds = getattr(args, "run_seconds", DEFAULT_RUN_SECONDS)
    if not run_seconds > 0:
        raise ServeError(f"--run-seconds must be positive, got {run_seconds:g}")
    try:
        hosts = [check_host(h) for h in getattr(args, "allow_hosts", [])]
        if not _is_loopback(host) and host not in ("0.0.0.0", "::"):
            hosts.append(check_host(host))
        policy = ServerPolicy(
            port=port,
            hosts=tuple(dict.fromkeys(hosts)),
            origins=tuple(dict.fromkeys(check_origin(o) for o in args.allow_origins)),
            open_paths=(*ALWAYS_OPEN, *getattr(args, "open_routes", [])),
            models=tuple(_check_model_form(m) for m in getattr(args, "allow_models", [])),
            default_model=model or settings.default_model_spec(),
            max_runs_per_user=per_user,
            run_seconds=run_seconds,
            budget_ceiling=parse_budget(getattr(args, "max_budget", [])),
        )
    except PolicyError as error:
        raise ServeError(str(error)) from None
    return ServerAccess(host, keys, roots, outputs, policy)


def operator_folders(
    flag: str, given: Sequence[Path], fallback: Sequence[Path] | None
) -> tuple[Path, ...]:
    """The folders a `--corpus-root`/`--output-root` flag names (else its environment's)."""
    folders = tuple(r.expanduser().resolve() for r in given) or tuple(fallback or ())
    for folder in folders:
        if not folder.is_dir():
            raise ServeError(f"{flag} {folder} is not a folder")
    return folders


def rooted_workspace(db: Database, args: argparse.Namespace) -> Any:
    """The workspace of a long-running process (`worker`, `events run`) on `db`.

    Its `--corpus-root` / `--output-root` flags (else the environment's) bound the folders its
    runs read and publish; none given: any folder, as for `ensemble run`.
    """
    from ensemble.workspace import Workspace

    return Workspace(
        db=db,
        corpus_roots=operator_folders("--corpus-root", args.corpus_roots, settings.corpus_roots())
        or None,
        output_roots=operator_folders("--output-root", args.output_roots, settings.output_roots())
        or None,
    )


def _check_model_form(spec: str) -> str:
    """An `--allow-model` spec of a known form; its key may come later, with the run."""
    from ensemble.agents.spec import model_spec_form

    try:
        return model_spec_form(spec)
    except ValueError as error:
        raise ServeError(f"--allow-model: {error}") from None


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def server_config(workdir: Path, *, allow_origins: Sequence[str] = ()) -> Path:
    """Write the server's langgraph.json into `workdir`; return its path.

    Made from the installed package (absolute paths), so `ensemble serve` works from any folder
    with `pip install`ed Ensemble; the server keeps its records in `workdir/.langgraph_api`.
    """
    from ensemble.server.config import langgraph_config

    target = workdir / CONFIG_NAME
    config = langgraph_config(allow_origins=allow_origins)
    target.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return target


def server_url(port: int, host: str = HOST) -> str:
    """The base URL clients use."""
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


def server_command(
    port: int,
    *,
    reload: bool = False,
    jobs: int = DEFAULT_JOBS,
    config: str | os.PathLike[str] | None = None,
    host: str = HOST,
) -> list[str]:
    """The `langgraph dev` command line, run with this Python so it sees the same packages.

    Reload is off by default: with it on, a server that fails to start hangs silently.
    """
    command = [sys.executable, "-m", "langgraph_cli", "dev"]
    command += ["--host", host, "--port", str(port), "--no-browser"]
    command += ["--n-jobs-per-worker", str(jobs)]
    if not reload:
        command.append("--no-reload")
    if config is not None:
        command += ["--config", str(config)]
    return command


def server_env(
    db: DatabaseLike,
    model: str | None = None,
    base: dict[str, str] | None = None,
    *,
    access: ServerAccess | None = None,
) -> dict[str, str]:
    """The server's environment: offline switches, the database, default model and access.

    The keys file and corpus roots travel as environment variables, which the server's auth
    module reads once; the served graphs hold every client to them (`ensemble/server/graphs.py`).
    Origins go into the generated langgraph.json, not `CORS_ALLOW_ORIGINS`.
    """
    access = access or ServerAccess()
    env = dict(os.environ if base is None else base)
    env.update(OFFLINE_ENV)
    env.pop("CORS_ALLOW_ORIGINS", None)  # only --allow-origin opens the API to web pages
    env.pop("CORS_CONFIG", None)
    env[POLICY_ENV] = access.policy.to_env()
    env["BG_JOB_TIMEOUT_SECS"] = f"{access.policy.run_seconds:g}"  # LangGraph stops the run
    env["HTTP_MAX_REQUEST_BODY_BYTES"] = str(MAX_BODY_BYTES)
    env["ENSEMBLE_DB"] = (
        database(db).url
        if database(db).is_postgres
        else str(Path(database(db).sqlite_path).resolve())
    )
    env["ENSEMBLE_CORPUS_ROOTS"] = os.pathsep.join(map(str, access.corpus_roots))
    env["ENSEMBLE_OUTPUT_ROOTS"] = os.pathsep.join(map(str, access.output_roots))
    if access.keys_file is not None:
        env[KEYS_FILE_ENV] = str(access.keys_file)
    else:
        env.pop(KEYS_FILE_ENV, None)
    if model:
        env["ENSEMBLE_MODEL"] = model
    return env


async def supervise(process: asyncio.subprocess.Process) -> int:
    """Wait for the server; forward SIGINT/SIGTERM to it and kill it if it will not stop.

    Returns:
        0 after a requested stop, else the server's exit code (128+N when killed by signal N).
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    installed = _install_handlers(loop, lambda sig: _request_stop(process, sig, stop))
    exited = asyncio.ensure_future(process.wait())
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not exited.done():
            try:
                await asyncio.wait_for(asyncio.shield(exited), STOP_GRACE_SECONDS)
            except TimeoutError:
                print("ensemble: server did not stop in time; killing it", file=sys.stderr)
                _signal_group(process, signal.SIGKILL)
                await exited
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        stopping.cancel()
        if process.returncode is None:  # we were cancelled: never leave a server behind
            _signal_group(process, signal.SIGKILL)
            with contextlib.suppress(Exception):
                await asyncio.shield(exited)
    code = process.returncode or 0
    if stop.is_set():
        return 0
    return 128 - code if code < 0 else code


def _request_stop(process: asyncio.subprocess.Process, sig: int, stop: asyncio.Event) -> None:
    if not stop.is_set():
        print("\nensemble: stopping the server ...", file=sys.stderr, flush=True)
        _signal_group(process, sig)
    stop.set()


def _install_handlers(loop: asyncio.AbstractEventLoop, handler: Any) -> list[int]:
    installed: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, handler, sig)
        except (NotImplementedError, RuntimeError, ValueError):
            continue  # not the main thread, or a platform without loop signal handlers
        installed.append(sig)
    return installed


def _signal_group(process: asyncio.subprocess.Process, sig: int) -> None:
    """Signal the server's whole process group (a reloading server has worker children)."""
    try:
        if hasattr(os, "killpg"):
            os.killpg(process.pid, sig)
        else:  # pragma: no cover - Windows
            process.send_signal(sig)
    except (ProcessLookupError, PermissionError):
        pass


def _check_port(port: int, host: str = HOST) -> None:
    if not 1 <= port <= 65535:
        raise ServeError(f"--port must be 1..65535, got {port}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
        try:
            probe.bind((host, port))
        except OSError as error:
            raise ServeError(f"port {port} on {host} is not free ({error.strerror})") from None
