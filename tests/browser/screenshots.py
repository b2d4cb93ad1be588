"""Pictures of the console's main views for the README: `python -m tests.browser.screenshots`.

Starts the browser tests' server (keys, offline model, a small corpus about bees), makes threads
in every state (running, waiting at each of the three gates, done, failed), drives the same
Chromium as the tests and writes `docs/console/{threads,thread,inbox,new-run,operations}.png`
(pat publishes an event whose subscription starts a run: the Operations view's sample).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

from tests.browser.pages import VIEWPORT, chromium, show, sign_in
from tests.browser.serving import (
    AUTHOR,
    CORPUS,
    QUESTION_EVENT,
    REVIEWER,
    SLOW_MODEL,
    Console,
    doomed_solver_input,
    serving,
)

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "console"


def make_threads(console: Console) -> dict[str, str]:
    """Threads in every state; returns the ids of the ones the pictures open."""
    published = console.start_run(
        REVIEWER, "content", {"topic": "How bees make honey", "corpus": CORPUS, "target_words": 150}
    )
    console.settled(REVIEWER, published)
    notes = {"action": "request_changes", "notes": "Say more about the waggle dance."}
    for answer in (notes, {"action": "approve"}):
        console.run(REVIEWER, published, "content", {"command": {"resume": answer}})
        console.settled(REVIEWER, published)
    briefs: list[tuple[str, dict[str, Any]]] = [
        ("research", {"question": "Why do bees dance?", "corpus": CORPUS}),
        ("research", {"question": "How do bees pollinate crops?", "review_plan": True}),
        ("content", {"topic": "Keeping bees in a city", "corpus": CORPUS}),
        ("solver", doomed_solver_input()),
    ]
    for scenario, brief in briefs:
        console.settled(AUTHOR, console.start_run(AUTHOR, scenario, brief))
    # a run halted by its budget, then stopped by a person: a failed run
    brief = {"question": "What do drones do?", "corpus": CORPUS}
    halted = console.start_run(AUTHOR, "research", brief, context={"budget": {"calls": 2}})
    assert console.settled(AUTHOR, halted)["waiting_for"] == "halted"
    console.run(REVIEWER, halted, "research", {"command": {"resume": "stop"}})
    console.settled(AUTHOR, halted)
    console.publish(QUESTION_EVENT, {"question": "Why do bees swarm?"}, "swarm-question-1")
    console.delivered("swarm-question-1")
    console.start_run(
        AUTHOR,
        "research",
        {"question": "How is wax made?", "corpus": CORPUS},
        context={"model": SLOW_MODEL},
    )
    return {"published": published}


def picture(page: Page, name: str, out: Path) -> Path:
    """The whole page as `out/name.png`."""
    page.wait_for_timeout(300)  # let the last poll's rows settle
    path = out / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def take(console: Console, threads: dict[str, str], out: Path) -> list[Path]:
    """Drive Chromium through the five main views."""
    out.mkdir(parents=True, exist_ok=True)
    with chromium() as browser:
        page = browser.new_page(viewport=VIEWPORT)  # type: ignore[arg-type]
        sign_in(page, console, REVIEWER)
        expect(page.locator("table.threads .status-running")).to_be_visible()
        paths = [picture(page, "threads", out)]
        show(page, f"#/thread/{threads['published']}")
        expect(page.locator("pre.result")).to_be_visible()
        paths.append(picture(page, "thread", out))
        show(page, "#/inbox")
        expect(page.locator("form.gate-form")).to_have_count(3)
        page.locator("form[data-gate=plan_review]").get_by_label("Edit").check()
        paths.append(picture(page, "inbox", out))
        show(page, "#/new?scenario=content")
        page.get_by_label("Topic").fill("How bees make honey")
        page.get_by_label("Corpus").fill(CORPUS)
        paths.append(picture(page, "new-run", out))
        show(page, "#/operations")
        expect(page.locator('table.events tr[data-event="swarm-question-1"]')).to_contain_text(
            "ask: done"
        )
        paths.append(picture(page, "operations", out))
    return paths


def main(argv: list[str] | None = None) -> int:
    """Start a server, make threads, write the pictures; print their paths."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"folder (default: {OUT})")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ensemble-console-") as base:
        with serving(Path(base)) as console:
            threads = make_threads(console)
            for path in take(console, threads, args.out):
                print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
