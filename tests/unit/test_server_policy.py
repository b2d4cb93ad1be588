"""The operator's serve policy and the request gate, without a server (a tiny ASGI app)."""

from __future__ import annotations

import json

import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from ensemble.server.gate import Gate
from ensemble.server.keys import ApiKeys, load_keys
from ensemble.server.policy import (
    PolicyError,
    ServerPolicy,
    check_host,
    check_open_path,
    check_origin,
    parse_budget,
)

KEY = "alice-key-0123456789abcdef"


def test_hosts_are_the_loopback_names_with_the_port_and_the_named_ones() -> None:
    policy = ServerPolicy(port=2024, hosts=("api.example.org",))
    for host in ("127.0.0.1:2024", "localhost:2024", "[::1]:2024", "API.example.org:2024",
                 "api.example.org"):  # fmt: skip
        assert policy.host_allowed(host), host
    for host in ("evil.example:2024", "127.0.0.1:2025", "127.0.0.1", "", None, "localhost.evil"):
        assert not policy.host_allowed(host), host


def test_origins_are_the_servers_own_and_the_named_ones() -> None:
    policy = ServerPolicy(port=2024, origins=("https://app.example",))
    assert policy.origin_allowed("https://app.example", "127.0.0.1:2024")
    assert policy.origin_allowed("http://127.0.0.1:2024", "127.0.0.1:2024")
    for origin in ("https://evil.example", "null", "https://app.example.evil", "http://localhost"):
        assert not policy.origin_allowed(origin, "127.0.0.1:2024"), origin


def test_the_policy_survives_the_trip_through_the_environment() -> None:
    policy = ServerPolicy(port=1, hosts=("a.b",), models=("offline",), default_model="offline")
    policy = ServerPolicy(**{**policy.__dict__, "max_runs_per_user": 3, "run_seconds": 5.0,
                             "budget_ceiling": {"calls": 9.0}})  # fmt: skip
    assert ServerPolicy.from_env({"ENSEMBLE_SERVER_POLICY": policy.to_env()}) == policy


@pytest.mark.parametrize(
    ("check", "value"),
    [
        (check_origin, "*"),
        (check_origin, "https://a.b/path"),
        (check_origin, "ftp://a.b"),
        (check_host, "evil host"),
        (check_host, "a..b"),
        (check_open_path, "/threads"),
        (parse_budget, ["calls"]),
        (parse_budget, ["money=5"]),
        (parse_budget, ["cost=5"]),  # a server has no prices: it could never fire
        (parse_budget, ["calls=-1"]),
        (parse_budget, ["calls=lots"]),
    ],
)
def test_malformed_operator_values_are_refused(check, value) -> None:
    with pytest.raises(PolicyError):
        check(value)


def test_good_operator_values_are_kept() -> None:
    assert check_origin("https://a.b/") == "https://a.b"
    assert check_host("API.example.org:8443") == "api.example.org:8443"
    assert parse_budget(["calls=200", "tokens=1.5e5"]) == {"calls": 200.0, "tokens": 150000.0}


def _app(keys: ApiKeys | None, policy: ServerPolicy) -> TestClient:
    async def ok(request):
        headers = {"access-control-allow-private-network": "true"}
        return JSONResponse({"ok": True}, headers=headers)

    inner = Starlette(routes=[Route(p, ok, methods=["GET", "POST", "OPTIONS"])
                              for p in ("/ok", "/metrics", "/threads/search")])  # fmt: skip
    return TestClient(Gate(inner, policy=policy, keys=keys), base_url="http://127.0.0.1:2024")


@pytest.fixture
def keys(tmp_path) -> ApiKeys:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"keys": [{"user": "alice", "key": KEY}]}), encoding="utf-8")
    return load_keys(path)


def test_the_gate_refuses_foreign_hosts_and_origins_and_never_grants_private_network() -> None:
    web = _app(None, ServerPolicy(port=2024))
    assert web.get("/ok").status_code == 200
    assert "access-control-allow-private-network" not in web.get("/ok").headers
    assert web.get("/ok", headers={"host": "evil.example:2024"}).status_code == 421
    refused = web.options("/threads/search", headers={"origin": "https://evil.example"})
    assert refused.status_code == 403 and "evil.example" in refused.json()["detail"]
    assert web.post("/threads/search", headers={"origin": "http://127.0.0.1:2024"}).is_success


def test_with_keys_the_gate_opens_only_ok_and_the_operators_routes(keys: ApiKeys) -> None:
    web = _app(keys, ServerPolicy(port=2024, open_paths=("/ok", "/metrics")))
    assert web.get("/ok").status_code == 200 and web.get("/metrics").status_code == 200
    assert web.post("/threads/search").status_code == 401
    assert web.post("/threads/search", headers={"x-api-key": "wrong" * 5}).status_code == 401
    assert web.post("/threads/search", headers={"x-api-key": KEY}).status_code == 200
    assert web.post("/threads/search", headers={"authorization": f"Bearer {KEY}"}).is_success
