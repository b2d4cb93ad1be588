"""The README shows the graphs as LangGraph draws them today."""

from pathlib import Path

import pytest

from ensemble.graphs.registry import SCENARIOS

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.mark.parametrize(
    ("name", "section"),
    [
        ("research", "## The research assistant"),
        ("content", "## The content pipeline"),
        ("solver", "## The distributed problem solver"),
    ],
)
def test_readme_mermaid_matches_the_graph(name, section, workspace):
    drawn = SCENARIOS[name].compile(None, workspace).get_graph().draw_mermaid().strip()
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n{section}\n")
    body = text[start : text.find("\n## ", start + 1)]
    assert f"```mermaid\n{drawn}\n```" in body


async def test_the_python_example_runs_as_shown(
    db_with_default_corpus, tmp_path, monkeypatch, capsys
):
    text = README.read_text(encoding="utf-8")
    start = text.index("\n## Using it from Python\n")
    code = text[text.index("```python\n", start) + 10 : text.index("\n```", start + 30)]
    (tmp_path / ".ensemble").mkdir()
    db_with_default_corpus.rename(tmp_path / ".ensemble" / "ensemble.db")  # indexed once
    monkeypatch.chdir(tmp_path)
    body = "async def example():\n" + "".join(f"    {line}\n" for line in code.splitlines())
    namespace: dict = {}
    exec(compile(body, "README.md", "exec"), namespace)  # noqa: S102
    await namespace["example"]()
    printed = capsys.readouterr().out
    assert "generator" in printed.lower() and "## Sources" in printed
