"""The console in a real browser against a real `ensemble serve` with keys.

rita is a reviewer, alice an author. Each test makes the threads it needs (through the API,
or through the console's own forms when that is what it checks) and drives Chromium the way a
person would: labels, roles and keyboard, never the page's internals.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import BrowserContext, Page, expect

from ensemble import processes
from tests.browser.pages import show, sign_in
from tests.browser.serving import (
    AUTHOR,
    CORPUS,
    KEYS,
    LIVE_MODEL,
    REVIEWER,
    Console,
    doomed_solver_input,
    serving,
)

pytestmark = pytest.mark.integration

RUN = 90_000
"""Milliseconds an offline run may take to reach its next stop."""
NOTE = "Say more about the waggle dance."
PAYLOAD = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'


def tag() -> str:
    """A word that makes one test's thread easy to find among the others."""
    return uuid.uuid4().hex[:8]


def thread_of(page: Page) -> str:
    """The id of the thread the page shows."""
    return page.url.rsplit("/", 1)[-1]


def content_input(topic: str) -> dict[str, Any]:
    return {"topic": topic, "corpus": CORPUS, "target_words": 120}


# -- a content run from the form, through the inbox, to the published piece -------------------


def test_a_reviewer_starts_a_content_run_reviews_it_twice_and_finds_the_piece(
    console: Console, context: BrowserContext
) -> None:
    page = sign_in(context.new_page(), console, REVIEWER)
    topic = f"How bees make honey {tag()}"
    page.get_by_role("link", name="New run").click()
    # the threads view has a "Scenario" select too: choose only once the form is on screen
    expect(page.get_by_role("heading", name="New run", level=1)).to_be_visible()
    page.get_by_label("Scenario").select_option("content")
    page.get_by_label("Topic").fill(topic)
    page.get_by_label("Target Words").fill("120")
    page.get_by_label("Corpus").fill(CORPUS)
    page.get_by_role("button", name="Start run").click()

    page.wait_for_url(re.compile(r"#/thread/[0-9a-f-]+$"))
    thread_id = thread_of(page)
    expect(page.get_by_role("heading", level=1)).to_have_text(topic)
    # the page follows the run by itself: the approval node is marked once the draft waits
    expect(page.locator('svg.graph g.node.current[data-node="approval"]')).to_be_visible(
        timeout=RUN
    )

    page.get_by_role("link", name="Inbox").click()
    card = page.locator(f'article[data-thread="{thread_id}"]')
    expect(card.get_by_role("heading", level=2)).to_contain_text(topic)
    first_draft = card.locator("pre.draft").inner_text()
    card.get_by_label("Request changes").check()
    card.get_by_label("Notes").fill(NOTE)
    card.get_by_role("button", name="Send answer").click()
    expect(card.get_by_text("Answered: Request changes")).to_be_visible()

    # the second draft arrives in the same card, with a new form
    expect(card.get_by_role("button", name="Send answer")).to_be_visible(timeout=RUN)
    values = console.thread(REVIEWER, thread_id)["values"]
    assert values["human_notes"] == [NOTE] and values["writing_round"] == 1
    assert card.locator("pre.draft").inner_text().strip()
    assert first_draft.strip()
    card.get_by_label("Approve").check()
    card.get_by_role("button", name="Send answer").click()
    expect(card.get_by_text("Outcome: published")).to_be_visible(timeout=RUN)

    card.get_by_role("link", name=re.compile(topic)).click()
    published = console.thread(REVIEWER, thread_id)["values"]["published"]
    files = [Path(f) for f in published["files"]]
    assert files and all(f.is_file() for f in files)
    expect(page.locator(".published")).to_contain_text(files[0].name)
    expect(page.locator("dl").first).to_contain_text("published")
    piece = console.thread(REVIEWER, thread_id)["result"]["text"]
    expect(page.locator("pre.result")).to_have_text(piece)


# -- the other two gates ---------------------------------------------------------------------


def test_a_reviewer_edits_a_plan_and_sees_a_refused_edit_by_its_field(
    console: Console, context: BrowserContext
) -> None:
    question = f"How do bees make honey? {tag()}"
    brief = {"question": question, "corpus": CORPUS, "review_plan": True}
    thread_id = console.start_run(
        AUTHOR, "research", brief | {"max_revisions": 0, "max_researchers": 2}
    )
    waiting = console.settled(AUTHOR, thread_id)
    plan = [item["question"] for item in waiting["interrupt"]["value"]["plan"]]

    page = sign_in(context.new_page(), console, REVIEWER)
    show(page, "#/inbox")
    card = page.locator(f'article[data-thread="{thread_id}"]')
    expect(card.locator("ol.plan li")).to_have_text(plan)
    card.get_by_label("Edit").check()
    lines = card.get_by_label("Subquestions")
    expect(lines).to_have_value("\n".join(plan))  # the plan, ready to edit

    too_many = ["Where do bees find nectar?", "How is honey stored?", "Who eats honey?"]
    lines.fill("\n".join(too_many))
    card.get_by_role("button", name="Send answer").click()
    # the gate refuses it and asks again: the answer stays, the reason stands by its field
    error = card.locator(".field-error")
    expect(error).to_contain_text("max_researchers is 2", timeout=RUN)
    expect(card.get_by_label("Subquestions")).to_have_value("\n".join(too_many))
    expect(card.get_by_label("Subquestions")).to_have_attribute("aria-invalid", "true")

    edited = ["Where do bees find nectar?", "How is honey stored?"]
    card.get_by_label("Subquestions").fill("\n".join(edited))
    card.get_by_role("button", name="Send answer").click()
    expect(card.get_by_text("Done")).to_be_visible(timeout=RUN)
    values = console.thread(REVIEWER, thread_id)["values"]
    assert [item["question"] for item in values["plan"]] == edited


def test_a_reviewer_answers_a_solver_escalation_from_the_thread_page(
    console: Console, context: BrowserContext
) -> None:
    thread_id = console.start_run(AUTHOR, "solver", doomed_solver_input())
    assert console.settled(AUTHOR, thread_id)["waiting_for"] == "solver_help"
    estimate = f"About 40,000 bees ({tag()})."

    page = sign_in(context.new_page(), console, REVIEWER)
    show(page, f"#/thread/{thread_id}")
    gate = page.locator("section.gate")
    expect(gate).to_contain_text("no capable agent left")
    gate.get_by_label("Skip").check()
    gate.get_by_label("Result").fill(estimate)
    gate.get_by_role("button", name="Send answer").click()

    expect(page.locator("dl").first).to_contain_text("solved", timeout=RUN)
    expect(page.locator("pre.result")).to_contain_text(estimate)
    assert console.thread(REVIEWER, thread_id)["values"]["results"]["estimate"]["agents"] == [
        "human"
    ]


# -- who may answer ----------------------------------------------------------------------------


def test_an_author_sees_no_forms_and_a_forged_answer_is_refused(
    console: Console, context: BrowserContext
) -> None:
    thread_id = console.start_run(AUTHOR, "content", content_input(f"Bees {tag()}"))
    assert console.settled(AUTHOR, thread_id)["status"] == "waiting"

    page = sign_in(context.new_page(), console, AUTHOR)
    show(page, "#/inbox")
    expect(page.get_by_text("Only reviewers answer")).to_be_visible()
    expect(page.locator("form")).to_have_count(0)
    show(page, f"#/thread/{thread_id}")
    expect(page.locator("section.gate")).to_contain_text("Only a reviewer can answer this.")
    expect(page.locator("section.gate form, section.gate input")).to_have_count(0)

    # the author's own key, sent by the console's page itself: the server still says no
    status, body = page.evaluate(
        """async (id) => {
            const response = await fetch(`/threads/${id}/runs`, {
                method: "POST",
                headers: {"Content-Type": "application/json",
                          "X-Api-Key": sessionStorage.getItem("ensemble-console-key")},
                body: JSON.stringify({assistant_id: "content",
                                      command: {resume: {action: "approve"}}}),
            });
            return [response.status, await response.text()];
        }""",
        thread_id,
    )
    assert status == 403 and "reviewer" in body
    after = console.thread(AUTHOR, thread_id)
    assert after["status"] == "waiting" and "published" not in (after["outcome"] or "")


def test_an_author_lists_only_their_own_threads(console: Console, context: BrowserContext) -> None:
    word = tag()
    mine = console.start_run(AUTHOR, "content", content_input(f"Alice's bees {word}"))
    theirs = console.start_run(REVIEWER, "content", content_input(f"Rita's bees {word}"))
    for thread_id, user in ((mine, AUTHOR), (theirs, REVIEWER)):
        console.settled(user, thread_id)

    page = sign_in(context.new_page(), console, AUTHOR)
    page.get_by_label("Text").fill(word)
    page.get_by_label("Text").press("Enter")
    expect(page.locator("table.threads tbody tr")).to_have_count(1)
    expect(page.locator("table.threads tbody")).to_contain_text("Alice's bees")
    show(page, f"#/thread/{theirs}")
    expect(page.get_by_role("heading", level=1)).to_have_text("Something went wrong")


# -- the threads list ---------------------------------------------------------------------------


def test_a_reviewer_filters_threads_by_scenario_status_owner_and_text(
    console: Console, context: BrowserContext
) -> None:
    word = tag()
    waiting = console.start_run(AUTHOR, "content", content_input(f"Filtered bees {word}"))
    done = console.start_run(AUTHOR, "research", {"question": f"Bees? {word}", "corpus": CORPUS})
    for thread_id in (waiting, done):
        console.settled(AUTHOR, thread_id)

    page = sign_in(context.new_page(), console, REVIEWER)
    rows = page.locator("table.threads tbody tr")
    page.get_by_label("Text").fill(word)
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(2)
    page.get_by_label("Status").select_option("waiting")  # a choice applies at once
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Filtered bees")
    expect(rows.first).to_contain_text("Waiting for a human (Content approval)")
    page.get_by_label("Status").select_option("")
    page.get_by_label("Scenario").select_option("research")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Done")
    page.get_by_label("Owner").fill(REVIEWER)
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_text("No threads match.")).to_be_visible()
    assert "owner=rita" in page.url and f"q={word}" in page.url


# -- a thread: live graph, timeline, per-agent figures, checkpoints, fork --------------------------


def test_a_thread_page_follows_its_run_live_and_shows_timeline_and_agents(
    console: Console, context: BrowserContext
) -> None:
    question = f"How do bees make honey? {tag()}"
    brief = {"question": question, "corpus": CORPUS, "review_plan": True}
    thread_id = console.new_thread(AUTHOR)
    page = sign_in(context.new_page(), console, REVIEWER)
    show(page, f"#/thread/{thread_id}")  # open before the run starts
    console.run(AUTHOR, thread_id, "research", {"input": brief, "context": {"model": LIVE_MODEL}})
    expect(page.get_by_role("heading", level=1)).to_have_text(question)
    expect(page.locator("dl .status-running")).to_be_visible()
    # no reload: the page polls while the run goes on, and marks where it stops
    expect(page.locator('svg.graph g.node.current[data-node="review_plan"]')).to_be_visible(
        timeout=RUN
    )
    expect(page.locator("dl .status-waiting")).to_be_visible()
    graph = console.thread(REVIEWER, thread_id)
    assert graph["current"] == ["review_plan"]
    drawn = page.locator("svg.graph g.node").evaluate_all("nodes => nodes.map(n => n.dataset.node)")
    scenario = next(s for s in console.scenarios() if s["name"] == "research")
    assert sorted(drawn) == sorted(n["id"] for n in scenario["graph"]["nodes"])

    timeline = page.locator("table.timeline tbody tr")
    expect(timeline).to_have_count(len(graph["timeline"]))
    expect(timeline.first).to_contain_text("planner")
    expect(timeline.first).to_contain_text(LIVE_MODEL.split("?")[0])
    agents = page.locator("section[aria-labelledby=agents-title] tbody tr")
    expect(agents).to_have_count(len(graph["agents"]))
    expect(page.locator("section[aria-labelledby=agents-title] tfoot")).to_contain_text(
        f"{graph['totals']['tokens_in']:,}"
    )


def test_a_fork_from_a_checkpoint_runs_with_an_edited_field(
    console: Console, context: BrowserContext
) -> None:
    first = f"How do bees make honey? {tag()}"
    thread_id = console.start_run(AUTHOR, "research", {"question": first, "corpus": CORPUS})
    before = console.settled(AUTHOR, thread_id)
    assert before["status"] == "done"
    start = next(c for c in before["checkpoints"] if c["next"] == ["planner"])

    reviewer = sign_in(context.new_page(), console, REVIEWER)
    show(reviewer, f"#/thread/{thread_id}")
    expect(reviewer.locator("table.checkpoints tbody tr")).to_have_count(len(before["checkpoints"]))
    expect(reviewer.get_by_role("button", name=re.compile("Fork"))).to_have_count(0)  # not theirs

    page = sign_in(context.new_page(), console, AUTHOR)
    show(page, f"#/thread/{thread_id}")
    page.get_by_role("button", name=f"Fork from step {start['step']}").click()
    fork = page.locator("section.fork")
    expect(fork.get_by_role("heading", level=2)).to_be_focused()
    second = f"How do bees pollinate crops? {tag()}"
    fork.get_by_label("Question").fill(second)
    fork.get_by_role("button", name="Start the fork").click()
    expect(fork).to_have_text(f"Forked from step {start['step']}.")

    expect(page.locator("pre.result")).to_contain_text(second, timeout=RUN)
    after = console.thread(AUTHOR, thread_id)
    assert after["values"]["question"] == second
    assert len(after["checkpoints"]) > len(before["checkpoints"])


# -- what other pages and model text cannot do ------------------------------------------------


@pytest.fixture
def foreign_site(tmp_path: Path, console: Console) -> Iterator[str]:
    """A page on another local port whose script tries to read the console's data."""
    target = f"{console.url}/console/api/threads"
    (tmp_path / "index.html").write_text(
        f"""<!doctype html><title>elsewhere</title><script>
        const attempts = [
          ["with the key", {{headers: {{"X-Api-Key": "{KEYS[REVIEWER]}"}}}}],
          ["plain", {{}}],
          ["no-cors", {{mode: "no-cors"}}],
        ];
        window.outcome = Promise.all(attempts.map(async ([name, init]) => {{
          try {{
            const response = await fetch("{target}", init);
            return [name, {{status: response.status, body: await response.text()}}];
          }} catch (error) {{
            return [name, {{error: String(error)}}];
          }}
        }}));
        </script>""",
        encoding="utf-8",
    )
    handler = partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    site = ThreadingHTTPServer(("127.0.0.1", processes.free_port()), handler)
    runner = threading.Thread(target=site.serve_forever, daemon=True)
    runner.start()
    yield f"http://127.0.0.1:{site.server_address[1]}/index.html"
    site.shutdown()
    site.server_close()


def test_a_page_of_another_origin_cannot_read_the_consoles_data(
    console: Console, context: BrowserContext, foreign_site: str
) -> None:
    thread_id = console.start_run(AUTHOR, "content", content_input(f"Secret bees {tag()}"))
    console.settled(AUTHOR, thread_id)
    page = context.new_page()
    answered: list[int] = []
    page.on(
        "response",
        lambda r: answered.append(r.status) if "/console/api/" in r.url else None,
    )
    page.goto(foreign_site)
    outcome = dict(page.evaluate("window.outcome"))
    assert "error" in outcome["with the key"] and "error" in outcome["plain"], outcome
    assert outcome["no-cors"] == {"status": 0, "body": ""}  # opaque: nothing to read
    assert thread_id not in str(outcome)
    # what the browser saw answered (a no-cors GET carries no Origin: no key, so 401)
    assert answered and set(answered) <= {401, 403}, answered
    # a CORS request carries the page's Origin: the gate refuses it, with the key or without
    origin = {"origin": foreign_site.rsplit("/", 1)[0]}
    for headers in (origin, origin | {"x-api-key": KEYS[REVIEWER]}):
        refused = httpx.get(f"{console.url}/console/api/threads", headers=headers, timeout=30)
        assert refused.status_code == 403, refused.text
        assert not any(k.startswith("access-control-") for k in refused.headers)


def test_model_text_with_markup_is_shown_as_text_and_never_runs(
    console: Console, context: BrowserContext
) -> None:
    question = f"How do bees make honey {PAYLOAD} {tag()}?"
    thread_id = console.start_run(AUTHOR, "research", {"question": question, "corpus": CORPUS})
    assert console.settled(AUTHOR, thread_id)["status"] == "done"
    report = console.thread(AUTHOR, thread_id)["result"]["text"]
    assert PAYLOAD in report  # the model's report repeats the question's markup

    page = sign_in(context.new_page(), console, REVIEWER)
    show(page, f"#/thread/{thread_id}")
    expect(page.get_by_role("heading", level=1)).to_have_text(question)
    expect(page.locator("pre.result")).to_have_text(report)
    show(page, "#/threads")
    expect(page.get_by_role("link", name=question)).to_be_visible()
    assert page.evaluate("() => window.__pwned") is None
    assert page.locator("main img, main script").count() == 0


# -- accessibility ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample_threads(console: Console) -> dict[str, str]:
    """A finished research thread and a content draft waiting for a reviewer."""
    done = console.start_run(
        AUTHOR, "research", {"question": "How do bees make honey?", "corpus": CORPUS}
    )
    waiting = console.start_run(AUTHOR, "content", content_input("How bees dance"))
    for thread_id in (done, waiting):
        console.settled(AUTHOR, thread_id)
    return {"done": done, "waiting": waiting}


@pytest.mark.parametrize("view", ["#/threads", "#/thread/{done}", "#/inbox", "#/new", "sign-in"])
def test_axe_finds_no_serious_violations(
    console: Console, context: BrowserContext, sample_threads: dict[str, str], view: str
) -> None:
    page = context.new_page()
    if view == "sign-in":
        page.goto(console.page)
        expect(page.get_by_label("API key")).to_be_focused()
    else:
        sign_in(page, console, REVIEWER)
        show(page, view.format(**sample_threads))
        if view == "#/inbox":
            card = page.locator(f'article[data-thread="{sample_threads["waiting"]}"]')
            card.get_by_label("Edit").check()  # a chosen answer shows its fields
        expect(page.locator("main")).not_to_contain_text("Something went wrong")
    results = Axe().run(page)
    serious = [v for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
    assert not serious, results.generate_report()


def test_every_control_is_reachable_by_keyboard(console: Console, context: BrowserContext) -> None:
    page = sign_in(context.new_page(), console, REVIEWER)
    show(page, "#/new")
    page.get_by_label("Scenario").select_option("research")
    reached = set()
    for _ in range(30):
        page.keyboard.press("Tab")
        label = page.evaluate(
            """() => {
                const el = document.activeElement;
                return el.labels && el.labels.length ? el.labels[0].textContent
                    : el.textContent.trim();
            }"""
        )
        reached.add(label)
    assert {"Question (required)", "Review Plan", "Start run"} <= reached, reached


# -- a server without keys ---------------------------------------------------------------------


def test_without_keys_the_console_opens_without_signing_in(
    tmp_path: Path, context: BrowserContext
) -> None:
    with serving(tmp_path, keys=False) as local:
        page = context.new_page()
        page.goto(local.page)
        expect(page.get_by_role("heading", name="Threads", level=1)).to_be_visible()
        expect(page.get_by_text("Local server, no keys")).to_be_visible()
        expect(page.get_by_role("button", name="Sign out")).to_be_hidden()
        expect(page.get_by_label("API key")).to_have_count(0)
        show(page, "#/new")
        page.get_by_label("Scenario").select_option("research")
        page.get_by_label("Question").fill("How do bees make honey?")
        page.get_by_label("Corpus").fill(CORPUS)
        page.get_by_role("button", name="Start run").click()
        expect(page.locator("dl .status-done")).to_be_visible(timeout=RUN)
