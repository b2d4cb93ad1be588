"""The server's checks, without a server: API keys, run requests, and `ensemble serve` flags."""

from __future__ import annotations

import argparse
import hashlib
import json
import uuid
from pathlib import Path

import pytest
from langgraph_sdk import Auth

from ensemble.cli.serve import ServeError, server_access, server_config, server_env
from ensemble.graphs.registry import SCENARIOS
from ensemble.server.config import langgraph_config
from ensemble.server.keys import KeysError, load_keys
from ensemble.server.policy import ServerPolicy
from ensemble.server.requests import (
    NAMESPACE_GRAPH,
    apply_settings,
    check_command,
    check_input,
    is_answer,
    scenario_of_assistant,
)

KEY = "a-key-of-sufficient-length"
POLICY = ServerPolicy(default_model="offline")


def write_keys(path: Path, keys: list) -> Path:
    path.write_text(json.dumps({"keys": keys}), encoding="utf-8")
    return path


def test_keys_map_to_users_and_roles(tmp_path):
    digest = hashlib.sha256(b"bob-key-of-sufficient-length").hexdigest()
    keys = load_keys(
        write_keys(
            tmp_path / "k.json",
            [
                {"user": "alice", "key": KEY, "roles": ["reviewer"]},
                {"user": "bob", "sha256": digest},
            ],
        )
    )
    alice = keys.lookup(KEY)
    assert alice is not None and alice.user == "alice" and alice.roles == {"reviewer"}
    bob = keys.lookup("bob-key-of-sufficient-length")
    assert bob is not None and bob.user == "bob" and not bob.roles
    assert keys.lookup("wrong") is None and keys.lookup("") is None


@pytest.mark.parametrize(
    "content, message",
    [
        ("not json", "not valid JSON"),
        ('{"keys": []}', "needs"),
        ('{"keys": [{"user": "a", "key": "short"}]}', "at least 16"),
        ('{"keys": [{"user": "a b", "key": "a-key-of-sufficient-length"}]}', "user must be"),
        (
            '{"keys": [{"user": "a", "key": "a-key-of-sufficient-length", "roles": ["root"]}]}',
            "roles",
        ),
        ('{"keys": [{"user": "a"}]}', "exactly one of key or sha256"),
        ('{"keys": [{"user": "a", "sha256": "xyz"}]}', "64 hex digits"),
        (
            '{"keys": [{"user": "a", "key": "a-key-of-sufficient-length", "pw": 1}]}',
            "unknown field",
        ),
        (
            '{"keys": [{"user": "a", "key": "a-key-of-sufficient-length"},'
            ' {"user": "b", "key": "a-key-of-sufficient-length"}]}',
            "listed twice",
        ),
    ],
)
def test_bad_keys_files_name_the_problem(tmp_path, content, message):
    path = tmp_path / "keys.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(KeysError, match=message) as caught:
        load_keys(path)
    assert str(path) in str(caught.value)


def test_assistant_ids_map_to_scenarios():
    for name, scenario in SCENARIOS.items():
        assert scenario_of_assistant(uuid.uuid5(NAMESPACE_GRAPH, name)) is scenario
    assert scenario_of_assistant(uuid.uuid4()) is None


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"command": {"update": {"outcome": "approved"}}}, "command.update"),
        ({"command": {"goto": "finalize"}}, "command.goto"),
        ({"command": "approve"}, "must be an object"),
        ({"webhook": "http://169.254.169.254/"}, "webhook"),
    ],
)
def test_commands_that_write_state_or_jump_are_refused(kwargs, message):
    with pytest.raises(Auth.exceptions.HTTPException, match=message) as caught:
        check_command(kwargs)
    assert caught.value.status_code == 422


def test_answers_are_recognised():
    assert is_answer({"command": {"resume": {"action": "approve"}}})
    assert not is_answer({"command": {"resume": None}}) and not is_answer({"input": {}})
    check_command({"command": {"resume": "yes", "update": None}})


async def test_input_is_validated_and_normalised(monkeypatch, tmp_path):
    research = SCENARIOS["research"]
    kwargs = {"input": {"question": "  How?  "}}
    await check_input(research, kwargs, POLICY)
    assert kwargs["input"]["question"] == "How?" and kwargs["input"]["max_revisions"] == 2
    for bad, field in [
        ({"question": ""}, "question"),
        ({"question": "q", "max_researchers": 99}, "max_researchers"),
        ({"question": "q", "corpus": str(tmp_path)}, "allowed no corpus folders"),
        ({"question": "q", "db_path": "/tmp/x"}, "db_path"),
    ]:
        with pytest.raises(Auth.exceptions.HTTPException, match=field) as caught:
            await check_input(research, {"input": bad}, POLICY)
        assert caught.value.status_code == 422


async def test_settings_are_checked_and_recorded_in_run_metadata():
    value = {"thread_id": None, "metadata": {}}
    kwargs = {"context": {"search_k": 2}}
    await apply_settings(value, kwargs, POLICY)
    assert kwargs["context"]["search_k"] == 2 and kwargs["context"]["model"] == "offline"
    assert json.loads(value["metadata"]["ensemble_settings"])["origin"]["search_k"] == "client"
    for context, field in [({"db_path": "/tmp/evil.db"}, "db_path"), ({"model": "nope"}, "nope")]:
        with pytest.raises(Auth.exceptions.HTTPException, match=field):
            await apply_settings({"metadata": {}}, {"context": context}, POLICY)


def serve_args(**overrides) -> argparse.Namespace:
    base = {"keys": None, "corpus_roots": [], "allow_origins": [], "host": "127.0.0.1"}
    return argparse.Namespace(**(base | overrides))


def test_serve_flags_are_checked(tmp_path):
    with pytest.raises(ServeError, match="unauthenticated"):
        server_access(serve_args(host="0.0.0.0"))
    with pytest.raises(ServeError, match="not a folder"):
        server_access(serve_args(corpus_roots=[tmp_path / "missing"]))
    with pytest.raises(ServeError, match="origin"):
        server_access(serve_args(allow_origins=["*"]))
    with pytest.raises(KeysError):
        server_access(serve_args(keys=tmp_path / "missing.json"))
    keys = write_keys(tmp_path / "k.json", [{"user": "a", "key": KEY}])
    access = server_access(
        serve_args(
            keys=keys, host="0.0.0.0", corpus_roots=[tmp_path], allow_origins=["https://a.b/"]
        )
    )
    assert access.policy.origins == ("https://a.b",) and access.corpus_roots == (
        tmp_path.resolve(),
    )


def test_server_environment_and_config_carry_the_operator_choices(tmp_path, monkeypatch):
    monkeypatch.setenv("CORS_ALLOW_ORIGINS", "*")
    keys = write_keys(tmp_path / "k.json", [{"user": "a", "key": KEY}])
    access = server_access(serve_args(keys=keys, corpus_roots=[tmp_path]))
    env = server_env(tmp_path / "db.sqlite", access=access)
    assert env["ENSEMBLE_API_KEYS_FILE"] == str(keys)
    assert env["ENSEMBLE_CORPUS_ROOTS"] == str(tmp_path.resolve())
    assert "CORS_ALLOW_ORIGINS" not in env
    plain = json.loads(server_config(tmp_path).read_text())
    assert plain["http"]["cors"]["allow_origins"] == []  # left out, LangGraph would allow all
    assert json.loads(env["ENSEMBLE_SERVER_POLICY"])["max_runs_per_user"] == 2
    assert plain["auth"]["disable_studio_auth"] is True
    assert Path(plain["auth"]["path"].split(":")[0]).is_file()
    opened = json.loads(server_config(tmp_path, allow_origins=["https://a.b"]).read_text())
    assert opened["http"]["cors"]["allow_origins"] == ["https://a.b"]


def test_the_repository_langgraph_json_is_the_generated_configuration():
    """Plain `langgraph dev` in a checkout serves exactly what `ensemble serve` serves."""
    root = Path(__file__).resolve().parents[2]
    written = json.loads((root / "langgraph.json").read_text(encoding="utf-8"))
    assert written == langgraph_config(checkout=root)
    for spec in [*written["graphs"].values(), written["checkpointer"]["path"]]:
        assert (root / spec.split(":")[0]).is_file()
