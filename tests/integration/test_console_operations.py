"""The console's operations view: the run queue, workers and leader (PostgreSQL), recent events.

Reviewers only; on SQLite it shows the events, on PostgreSQL also what the workers are doing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_cluster import Cluster, cluster, research_args  # noqa: F401
from tests.integration.test_server_doors import KEYS, Served, keyed, plain, raw, serving  # noqa: F401

pytestmark = pytest.mark.integration


def test_on_sqlite_it_shows_the_events_and_no_queue(plain: Served) -> None:  # noqa: F811
    published = raw(plain, "POST", "/events", json={"type": "demo.ping", "data": {"n": 1},
                                                    "id": "console-ops-1"})  # fmt: skip
    assert published.status_code == 202, published.text
    view = raw(plain, "GET", "/console/api/operations").json()
    assert view["database"] == "sqlite"
    assert view["queue"] is None and view["leader"] is None and view["workers"] == []
    (event,) = [e for e in view["events"] if e["id"] == "console-ops-1"]
    assert event["type"] == "demo.ping" and event["data"] == {"n": 1}


def test_only_reviewers_see_operations(keyed: Served) -> None:  # noqa: F811
    assert raw(keyed, "GET", "/console/api/operations").status_code == 401
    refused = raw(keyed, "GET", "/console/api/operations", "alice")
    assert refused.status_code == 403 and "reviewer" in refused.text
    assert raw(keyed, "GET", "/console/api/operations", "rita").status_code == 200


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"keys": [{"user": "rita", "key": KEYS["rita"],
                                          "roles": ["reviewer"]}]}))  # fmt: skip
    return path


@pytest.fixture
def worked(cluster: Cluster) -> Iterator[tuple[Cluster, str]]:  # noqa: F811
    """A research run submitted to the queue and run by worker w1, which leads."""
    thread_id = cluster.submit(*research_args(cluster.corpus))
    worker = cluster.start_worker("w1")
    cluster.wait_status(thread_id, "done")
    worker.wait_for("leader", 30)
    yield cluster, thread_id


def test_on_postgresql_it_shows_the_queue_the_workers_the_leader_and_run_events(
    worked: tuple[Cluster, str], keys_file: Path
) -> None:
    here, thread_id = worked
    flags = ("--db", here.url, "--keys", str(keys_file))
    with serving(here.cwd, *flags) as served:
        view = raw(served, "GET", "/console/api/operations", "rita").json()
    assert view["database"] == "postgresql"
    assert view["leader"]["worker"] == "w1" and view["leader"]["epoch"] >= 1
    assert view["queue"]["done"] == 1 and view["queue"]["queued"] == 0
    (run,) = [r for r in view["runs"] if r["thread_id"] == thread_id]
    assert run["status"] == "done" and run["scenario"] == "research" and run["finished_at"]
    done = [e for e in view["events"] if e["type"] == "run.done"]
    assert done and done[0]["data"]["thread_id"] == thread_id
