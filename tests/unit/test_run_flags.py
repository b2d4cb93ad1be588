"""Run-settings flags are made from `Context`: every scalar field has one, with its default."""

from __future__ import annotations

import re
import typing
from dataclasses import fields

import pytest

from ensemble.cli.commands import thread_parser
from ensemble.cli.flags import given_settings
from ensemble.cli.main import main
from ensemble.context import Context
from ensemble.errors import InvalidInputError
from ensemble.run_settings import resolve

HINTS = typing.get_type_hints(Context)
SCALAR = [f.name for f in fields(Context) if HINTS[f.name] in (str, int, float, bool)]


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def other_value(name: str) -> tuple[list[str], object]:
    """Command-line words setting `name` to a value other than its default, and that value."""
    default = getattr(Context(), name)
    if isinstance(default, bool):
        return [flag(name) if not default else "--no-" + name.replace("_", "-")], not default
    if isinstance(default, str):
        return [flag(name), "offline?latency=0"], "offline?latency=0"
    return [flag(name), str(default + 1)], default + 1


def test_the_scalar_settings_are_the_ones_expected():
    assert set(SCALAR) >= {"model", "search_k", "max_concurrency", "model_timeout", "cache"}


@pytest.mark.parametrize("command", ["resume", "fork"])
def test_every_scalar_setting_has_its_flag_with_contexts_default_in_its_help(capsys, command):
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    entries = re.split(r"\n  (?=-)", capsys.readouterr().out.split("\nrun settings:")[1])
    helps = {e.split()[0].rstrip(","): " ".join(e.split()) for e in entries if e.strip()}
    for name in SCALAR:
        assert f"default {getattr(Context(), name)}" in helps[flag(name)], name


@pytest.mark.parametrize("name", SCALAR)
def test_a_flag_sets_its_setting(name):
    words, value = other_value(name)
    args = thread_parser("resume", "test").parse_args(["t", *words])
    given = given_settings(args)
    assert given == {name: value}
    assert getattr(resolve(None, given, how="resume").context, name) == value


def test_unset_flags_leave_every_setting_to_the_thread():
    args = thread_parser("fork", "test").parse_args(["t", "--checkpoint", "c"])
    assert given_settings(args) == {}


def test_mapping_flags_build_their_mappings(tmp_path):
    prices = tmp_path / "prices.yaml"
    prices.write_text("offline: {input: 1, output: 2}\n", encoding="utf-8")
    args = thread_parser("resume", "test").parse_args(
        ["t", "--role-model", "writer=offline", "--fallback", "offline", "--fallback",
         "writer=offline?latency=0", "--budget", '{"cost": 1}', "--prices", str(prices)]
    )  # fmt: skip
    assert given_settings(args) == {
        "role_models": {"writer": "offline"},
        "fallbacks": {"*": ["offline"], "writer": ["offline?latency=0"]},
        "budget": {"cost": 1.0},
        "prices": {"offline": {"input": 1.0, "output": 2.0}},
    }


@pytest.mark.parametrize(
    "words, message",
    [
        (["--search-k", "0"], "--search-k: "),
        (["--model-timeout", "soon"], "--model-timeout: "),
        (["--role-model", "writer"], "--role-model takes ROLE=SPEC"),
        (["--role-model", "=offline"], "--role-model takes ROLE=SPEC"),
        (["--budget", '{"coins": 1}'], "--budget: "),
        (["--budget", "{"], "--budget is not valid JSON"),
    ],
)
def test_a_refused_value_names_its_flag(words, message):
    args = thread_parser("resume", "test").parse_args(["t", *words])
    with pytest.raises(InvalidInputError, match=message.replace("{", r"\{")):
        given_settings(args)
