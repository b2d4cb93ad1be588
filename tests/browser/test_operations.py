"""The console's Operations view in a real browser, on the keyed SQLite test server.

pat publishes a `question.asked` event through `POST /events`; the server's dispatcher starts a
research run for it. rita (reviewer) watches it arrive without reloading; alice (no roles) is
shown no tab and, asking by address, only the server's refusal.
"""

from __future__ import annotations

import json
import uuid

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import BrowserContext, expect

from tests.browser.pages import show, sign_in
from tests.browser.serving import AUTHOR, QUESTION_EVENT, REVIEWER, Console

pytestmark = pytest.mark.integration


def test_a_reviewer_watches_a_published_event_and_its_delivery_arrive(
    console: Console, context: BrowserContext
) -> None:
    page = sign_in(context.new_page(), console, REVIEWER)
    page.get_by_role("link", name="Operations").click()
    expect(page.get_by_role("heading", name="Operations", level=1)).to_be_visible()
    expect(page.locator("main dl").first).to_contain_text("SQLite")
    expect(page.get_by_text("The run queue and workers exist on PostgreSQL")).to_be_visible()

    # published after the page opened: the view refreshes by itself
    event_id = f"ops-{uuid.uuid4().hex[:8]}"
    data = {"question": f"Why do bees buzz? <b>{event_id}</b>"}
    console.publish(QUESTION_EVENT, data, event_id)
    row = page.locator(f'table.events tr[data-event="{event_id}"]')
    expect(row).to_contain_text(QUESTION_EVENT)
    expect(row).to_contain_text("api:pat")
    expect(row.locator("pre")).to_have_text(json.dumps(data, indent=2))
    assert row.locator("b").count() == 0  # the event's data is text, never markup

    delivery = console.delivered(event_id)
    assert delivery["subscription"] == "ask" and delivery["status"] == "done", delivery
    shown = row.locator('li[data-subscription="ask"]')
    expect(shown).to_contain_text("ask: done")
    expect(shown).to_contain_text(delivery["thread_id"])
    counts = console.operations()["subscriptions"]["ask"]
    expect(page.locator('table.subscriptions tr[data-subscription="ask"] td')).to_have_text(
        [
            str(counts.get(s, 0))
            for s in ("pending", "started", "waiting", "done", "dead", "duplicate")
        ]
    )

    results = Axe().run(page)
    serious = [v for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
    assert not serious, results.generate_report()


def test_an_author_has_no_operations_tab_and_is_refused_by_address(
    console: Console, context: BrowserContext
) -> None:
    event_id = f"secret-{uuid.uuid4().hex[:8]}"
    console.publish(QUESTION_EVENT, {"question": f"Who keeps bees? {event_id}"}, event_id)

    page = sign_in(context.new_page(), console, AUTHOR)
    expect(page.get_by_role("link", name="New run")).to_be_visible()
    expect(page.get_by_role("link", name="Operations")).to_have_count(0)
    show(page, "#/operations")
    expect(page.get_by_role("heading", level=1)).to_have_text("Operations")
    expect(page.locator("main .error")).to_contain_text("needs a key with the reviewer role")
    expect(page.locator("main table, main dl")).to_have_count(0)
    expect(page.locator("main")).not_to_contain_text(event_id)
