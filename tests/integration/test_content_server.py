"""The content pipeline through a real `ensemble serve` with keys, corpus and output roots.

An author (no roles) starts content runs; only a reviewer answers the approval. Nothing is
written before a person approves, files go only into the operator's `--output-root`, and an
`output_dir` that leaves it is a 422 before any run exists. The approval round trip runs on a
server on SQLite and on one on PostgreSQL; the checks of folders on the SQLite one only.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client

from ensemble import processes
from ensemble.publishing.piece import count_words
from tests.corpus import write_corpus
from tests.databases import DATABASES, database_for

pytestmark = pytest.mark.integration

KEYS = {"ana": "ana-author-key-0123456789", "rex": "rex-reviewer-key-0123456789"}
AUTHOR, REVIEWER = "ana", "rex"
ASSISTANT = "content"
BLOG = {
    "topic": "How bees make honey",
    "corpus": "bees",
    "output_dir": "site",
    "target_words": 150,
}
NOTE = "Say more about the waggle dance."
ITEMS = ["Why bees dance", "How honey is stored", "Which crops need bees"]
ON_SQLITE_ONLY = pytest.mark.parametrize("served", ["sqlite"], indirect=True)
"""For a test of folders and validation, not of the database: one server is enough."""


@dataclass(frozen=True)
class ContentServer:
    url: str
    db: str
    roots: Path
    out: Path
    outside: Path
    log: Path


@pytest.fixture(scope="module", params=DATABASES, ids=DATABASES)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ContentServer]:
    """`ensemble serve --keys --corpus-root --output-root --model offline`, escapes planted."""
    base = tmp_path_factory.mktemp("content")
    roots = base / "roots"
    write_corpus(roots / "bees")
    out = base / "out"
    out.mkdir()
    outside = base / "outside"
    outside.mkdir()
    (out / "escape").symlink_to(outside, target_is_directory=True)
    keys = base / "keys.json"
    entries: list[dict[str, Any]] = [
        {"user": AUTHOR, "key": KEYS[AUTHOR]},
        {"user": REVIEWER, "key": KEYS[REVIEWER], "roles": ["reviewer"]},
    ]
    keys.write_text(json.dumps({"keys": entries}), encoding="utf-8")
    db = database_for(request, base / "data")
    port = processes.free_port()
    log = base / "serve.log"
    argv = [sys.executable, "-m", "ensemble.cli.main", "serve", "--port", str(port)]
    argv += ["--db", db, "--model", "offline", "--keys", str(keys)]
    argv += ["--corpus-root", str(roots), "--output-root", str(out)]
    url = f"http://127.0.0.1:{port}"
    # on PostgreSQL the server keeps its records in the working directory's data folder
    with processes.start(argv, log, cwd=base) as child:
        child.wait_ready(f"{url}/ok", 120)
        yield ContentServer(url=url, db=db, roots=roots, out=out, outside=outside, log=log)


def client(server: ContentServer, user: str):
    return get_client(url=server.url, api_key=KEYS[user])


async def expect_status(status: int, coroutine: Any) -> str:
    with pytest.raises(httpx.HTTPStatusError) as caught:
        await coroutine
    assert caught.value.response.status_code == status, caught.value.response.text
    return caught.value.response.text


def tree(folder: Path) -> set[str]:
    """Every file and folder below `folder` (relative), not following symlinks."""
    found: set[str] = set()
    for where, dirs, files in os.walk(folder):
        for name in [*dirs, *files]:
            found.add(str((Path(where) / name).relative_to(folder)))
    return found


PLANTED = {"escape"}
"""What the fixture put in the output root: the symlink to a folder outside it."""


async def test_author_drafts_reviewer_requests_changes_then_approves(
    served: ContentServer,
) -> None:
    author, reviewer = client(served, AUTHOR), client(served, REVIEWER)
    thread_id = (await author.threads.create())["thread_id"]
    out = await author.runs.wait(thread_id, ASSISTANT, input=BLOG)
    assert out["__interrupt__"][0]["value"]["kind"] == "content_approval"

    state = await author.threads.get_state(thread_id)
    assert state["next"] == ["approval"]
    (pending,) = state["interrupts"]
    request = pending["value"]
    assert request["kind"] == "content_approval"
    assert request["title"] and request["draft"].strip()
    assert request["word_count"] == count_words(request["draft"]) > 0
    assert request["sources"] and all(s.startswith("[") for s in request["sources"])
    assert "request_changes" in request["answer_format"] and request["error"] is None
    assert isinstance(request["editor_notes"], dict)
    assert (await author.threads.get(thread_id))["status"] == "interrupted"
    assert tree(served.out) == PLANTED, "nothing is written before the approval"

    approve = {"resume": {"action": "approve"}}
    text = await expect_status(403, author.runs.wait(thread_id, ASSISTANT, command=approve))
    assert "reviewer" in text
    assert (await author.threads.get_state(thread_id))["next"] == ["approval"]

    changes = {"resume": {"action": "request_changes", "notes": NOTE}}
    await reviewer.runs.wait(thread_id, ASSISTANT, command=changes)
    state = await author.threads.get_state(thread_id)
    assert state["next"] == ["approval"]
    assert state["values"]["writing_round"] == 1
    assert state["values"]["human_notes"] == [NOTE]
    assert state["interrupts"][0]["value"]["kind"] == "content_approval"
    assert tree(served.out) == PLANTED

    out = await reviewer.runs.wait(thread_id, ASSISTANT, command=approve)
    assert out["outcome"] == "published", out
    slug = out["published"]["slug"]
    site = served.out / "site"
    expected = {site / f"{slug}.md", site / f"{slug}.html"}
    assert {Path(f) for f in out["published"]["files"]} == expected
    assert tree(served.out) == PLANTED | {"site", f"site/{slug}.md", f"site/{slug}.html"}
    html = (site / f"{slug}.html").read_text(encoding="utf-8")
    assert "<script" not in html.lower()
    assert out["title"] in (site / f"{slug}.md").read_text(encoding="utf-8")
    assert not os.listdir(served.outside)
    assert (await author.threads.get(thread_id))["status"] == "idle"


@ON_SQLITE_ONLY
async def test_an_edited_text_is_published_sanitised_into_the_root_itself(
    served: ContentServer,
) -> None:
    author, reviewer = client(served, AUTHOR), client(served, REVIEWER)
    thread_id = (await author.threads.create())["thread_id"]
    before = tree(served.out)
    brief = BLOG | {"output_dir": str(served.out), "max_revisions": 0}
    out = await author.runs.wait(thread_id, ASSISTANT, input=brief)
    assert out["__interrupt__"][0]["value"]["kind"] == "content_approval"
    edit = {
        "action": "edit",
        "title": "Honey, edited by a person",
        "text": "Bees make honey from nectar [1].\n\n<script>alert(1)</script>",
    }
    out = await reviewer.runs.wait(thread_id, ASSISTANT, command={"resume": edit})
    assert out["outcome"] == "published", out
    assert out["title"] == edit["title"] and out["piece"].startswith("Bees make honey")
    slug = out["published"]["slug"]
    assert tree(served.out) - before == {f"{slug}.md", f"{slug}.html"}
    html = (served.out / f"{slug}.html").read_text(encoding="utf-8")
    assert "<script" not in html.lower() and "Bees make honey from nectar" in html
    assert not os.listdir(served.outside)


@pytest.mark.parametrize(
    "output_dir",
    [
        "/tmp/x",
        "{outside}",
        "{outside}/new",
        "../x",
        "site/../../outside",
        "{out}/../outside",
        "escape",
        "escape/new",
        "{out}/escape",
    ],
)
@ON_SQLITE_ONLY
async def test_output_dir_outside_the_roots_is_a_422(served: ContentServer, output_dir) -> None:
    author = client(served, AUTHOR)
    thread_id = (await author.threads.create())["thread_id"]
    before = tree(served.out)
    tmp_x_existed = Path("/tmp/x").exists()
    output_dir = output_dir.format(outside=served.outside, out=served.out)
    text = await expect_status(
        422, author.runs.wait(thread_id, ASSISTANT, input=BLOG | {"output_dir": output_dir})
    )
    assert "output_dir" in text
    assert await author.runs.list(thread_id) == []  # no half-created run
    assert not (await author.threads.get_state(thread_id))["values"]
    assert tree(served.out) == before
    assert not os.listdir(served.outside)
    assert Path("/tmp/x").exists() == tmp_x_existed


@ON_SQLITE_ONLY
async def test_a_newsletter_reaches_approval_and_a_rejection_publishes_nothing(
    served: ContentServer,
) -> None:
    author, reviewer = client(served, AUTHOR), client(served, REVIEWER)
    thread_id = (await author.threads.create())["thread_id"]
    before = tree(served.out)
    newsletter = BLOG | {"topic": "Bee news", "format": "newsletter", "items": ITEMS}
    newsletter["output_dir"] = served.out.name  # the output root itself, by its name
    out = await author.runs.wait(thread_id, ASSISTANT, input=newsletter | {"max_revisions": 0})
    assert out["__interrupt__"][0]["value"]["kind"] == "content_approval"
    state = await author.threads.get_state(thread_id)
    assert state["next"] == ["approval"]
    values = state["values"]
    assert len(values["brief"]) == 3
    assert set(values["drafts"]) == {item["id"] for item in values["brief"]}
    request = state["interrupts"][0]["value"]
    assert request["draft"].strip() and request["word_count"] > 0 and request["sources"]
    assert tree(served.out) == before

    out = await reviewer.runs.wait(thread_id, ASSISTANT, command={"resume": {"action": "reject"}})
    assert out["outcome"] == "rejected", out
    assert out["published"] is None
    assert (await author.threads.get_state(thread_id))["next"] == []
    assert tree(served.out) == before
    assert not os.listdir(served.outside)
