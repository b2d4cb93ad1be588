"""Smoke test of `python -m benchmarks.events_latency`: every row measured, the table, the JSON."""

from __future__ import annotations

import json

import pytest

from benchmarks import events_latency

pytestmark = pytest.mark.integration


def test_the_benchmark_measures_every_row_and_prints_its_table_and_json(capsys):
    found = events_latency.main(["--probes", "2", "--burst", "20", "--runs", "4"])
    printed = capsys.readouterr().out.splitlines()
    assert json.loads(printed[-1]) == found
    header = next(n for n, line in enumerate(printed) if line.startswith("setup"))
    assert [line.split()[0] for line in printed[header + 1 : header + 4]] == [
        "sqlite",
        "postgresql",
        "baseline",
    ]
    assert found["machine"]["cpus"] >= 1 and found["date"]
    rows = {row["setup"]: row for row in found["rows"]}
    for row in rows.values():  # each probe's run started, after its event was published
        assert 0 < row["p50_ms"] <= row["p95_ms"] <= row["max_ms"] < 30_000
    sqlite, postgresql = rows["sqlite"], rows["postgresql"]
    assert sqlite["routed_per_s"] > 0 and sqlite["started_per_s"] > 0 and sqlite["done_per_s"] > 0
    assert postgresql["routed_per_s"] > 0 and postgresql["queued_per_s"] > 0
    assert 0 < postgresql["to_delivery_started_p50_ms"] <= postgresql["to_worker_claim_p50_ms"]
    assert set(found["ratios"]) == {"sqlite_over_baseline", "postgresql_over_baseline"}
    ratio = sqlite["p50_ms"] / rows["baseline"]["p50_ms"]
    # the ratio is printed to 3 decimals: equal up to that rounding
    printed_ratio = found["ratios"]["sqlite_over_baseline"]["p50"]
    assert printed_ratio == pytest.approx(ratio, rel=0.01, abs=6e-4)
