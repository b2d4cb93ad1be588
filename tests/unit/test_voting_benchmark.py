"""Smoke test of `python -m benchmarks.voting`: runs, is reproducible, prints its table."""

from __future__ import annotations

from benchmarks import voting


def test_the_benchmark_prints_a_row_per_setting_and_is_reproducible(capsys):
    rows = voting.main(["--trials", "30", "--seed", "7"])
    printed = capsys.readouterr().out
    settings = len(voting.ERROR_RATES) * len(voting.REPLICAS) * len(voting.POLICIES)
    assert len(rows) == settings
    header, rule, *body = printed.split("\n\n")[0].splitlines()
    assert header.split() == [name for name, _ in voting.COLUMNS]
    assert set(rule) == {"-"} and len(body) == settings
    assert "binomial = P(X > k/2)" in printed
    for row in rows:
        assert 0.0 <= row["accuracy"] <= 1.0 and 0.0 <= row["split"] <= 1.0
        assert row["calls_per_task"] == row["k"]
        assert abs(row["accuracy"] + row["split"] + row["wrong"] - 1.0) < 1e-3
    assert voting.run(30, 7) == rows
    assert voting.run(30, 8) != rows


def test_the_binomial_prediction():
    assert voting.predicted(1, 0.2) == 0.8
    assert abs(voting.predicted(3, 0.2) - (0.8**3 + 3 * 0.8**2 * 0.2)) < 1e-12
