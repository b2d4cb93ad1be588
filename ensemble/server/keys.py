"""API keys for the server: each key is a user, with optional roles (`reviewer`).

The operator lists them in a JSON file (`ensemble serve --keys FILE`, `ENSEMBLE_API_KEYS_FILE`):

    {"keys": [{"user": "alice", "key": "a-long-random-secret", "roles": ["reviewer"]},
              {"user": "bob", "sha256": "<hex digest of bob's key>"}]}

A key may be stored as its SHA-256 digest so the file holds no secret. Keys are compared in
constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ensemble.errors import EnsembleError

KEYS_FILE_ENV = "ENSEMBLE_API_KEYS_FILE"
REVIEWER = "reviewer"
PUBLISHER = "publisher"
ROLES = frozenset({REVIEWER, PUBLISHER})
"""`reviewer`: may answer human reviews (and read the threads waiting for one).
`publisher`: may publish events (`POST /events`), which start the runs subscriptions ask for."""
MIN_KEY_CHARS = 16
_USER = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


class KeysError(EnsembleError):
    """The keys file is missing or malformed."""


@dataclass(frozen=True)
class ApiUser:
    """Who a key belongs to."""

    user: str
    roles: frozenset[str]


@dataclass(frozen=True)
class _Entry:
    digest: bytes
    who: ApiUser


class ApiKeys:
    """The configured keys; `lookup` returns the user a presented key belongs to."""

    def __init__(self, entries: list[_Entry]) -> None:
        self._entries = entries

    def lookup(self, presented: str) -> ApiUser | None:
        """The user of `presented`, comparing every entry in constant time."""
        digest = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
        found = None
        for entry in self._entries:
            if hmac.compare_digest(entry.digest, digest):
                found = entry.who
        return found


def load_keys(path: str | os.PathLike[str]) -> ApiKeys:
    """Read and check a keys file.

    Raises:
        KeysError: Naming the file and the entry that is wrong.
    """
    source = Path(path)
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except OSError as error:
        raise KeysError(f"cannot read keys file {source}: {error.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise KeysError(f"keys file {source} is not valid JSON: {error}") from None
    items = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items:
        raise KeysError(f'keys file {source} needs {{"keys": [{{"user": ..., "key": ...}}]}}')
    entries = [_entry(source, n, item) for n, item in enumerate(items, 1)]
    digests = [e.digest for e in entries]
    if len(set(digests)) != len(digests):
        raise KeysError(f"keys file {source}: the same key is listed twice")
    return ApiKeys(entries)


def _entry(source: Path, n: int, item: object) -> _Entry:
    where = f"keys file {source}, entry {n}"
    if not isinstance(item, dict):
        raise KeysError(f"{where}: must be an object")
    unknown = set(item) - {"user", "key", "sha256", "roles"}
    if unknown:
        raise KeysError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    user, roles = item.get("user"), item.get("roles", [])
    if not isinstance(user, str) or not _USER.match(user):
        raise KeysError(f"{where}: user must be 1-64 letters, digits or _.@-")
    if not isinstance(roles, list) or not set(roles) <= ROLES:
        raise KeysError(f"{where}: roles must be a list drawn from {sorted(ROLES)}")
    key, digest = item.get("key"), item.get("sha256")
    if (key is None) == (digest is None):
        raise KeysError(f"{where}: give exactly one of key or sha256")
    if key is not None:
        if not isinstance(key, str) or len(key) < MIN_KEY_CHARS:
            raise KeysError(f"{where}: key must be at least {MIN_KEY_CHARS} characters")
        raw = hashlib.sha256(key.encode()).digest()
    else:
        if not isinstance(digest, str) or not _DIGEST.match(digest.lower()):
            raise KeysError(f"{where}: sha256 must be 64 hex digits")
        raw = bytes.fromhex(digest)
    return _Entry(raw, ApiUser(user, frozenset(roles)))


def presented_key(x_api_key: str, authorization: str) -> str:
    """The key a request presents: `X-Api-Key`, else an `Authorization: Bearer` token."""
    if x_api_key.strip():
        return x_api_key.strip()
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def configured_keys() -> ApiKeys | None:
    """The keys named by `ENSEMBLE_API_KEYS_FILE`, or None when the server is unauthenticated."""
    path = os.environ.get(KEYS_FILE_ENV, "").strip()
    return load_keys(path) if path else None
