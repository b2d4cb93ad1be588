"""Voting among replicated agents: each policy on scripted disagreements, ties, splits."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ensemble.errors import EnsembleError
from ensemble.voting import Vote, VotePolicy, VoteResult, decide, vote_key


def votes(*values, confidences=None) -> list[Vote]:
    confidences = confidences or [1.0] * len(values)
    return [
        Vote(f"agent{i}", value, conf)
        for i, (value, conf) in enumerate(zip(values, confidences, strict=True))
    ]


MAJORITY = VotePolicy()


def test_no_votes_is_empty():
    result = decide([], MAJORITY)
    assert result == VoteResult("empty", None, 0.0, [], "no votes")
    assert decide([], VotePolicy(policy="numeric")).status == "empty"


def test_majority_picks_the_value_with_more_than_half():
    result = decide(votes("Paris", "Lyon", "paris."), MAJORITY)
    assert result.status == "agreed"
    assert result.value == "Paris"
    assert result.support == pytest.approx(2 / 3)
    assert result.groups[0]["agents"] == ["agent0", "agent2"]
    assert result.groups[1] == {"value": "Lyon", "agents": ["agent1"], "votes": 1, "weight": 1.0}
    assert "2 of 3 votes" in result.reason


def test_text_is_compared_through_same_key():
    assert vote_key("Paris.") == vote_key("  paris ")
    assert vote_key(1) == vote_key(1.0)
    assert vote_key(True) != vote_key(1)
    assert vote_key({"a": 1, "b": [2]}) == vote_key({"b": [2], "a": 1})
    result = decide(votes("Paris.", "paris", "PARIS!", "Rome"), MAJORITY)
    assert result.status == "agreed" and result.groups[0]["votes"] == 3


def test_majority_splits_on_a_tie_and_says_between_what():
    result = decide(votes("a", "b", "a", "b"), MAJORITY)
    assert result.status == "split" and result.value is None
    assert result.reason == "2 vs 2 between 'a' and 'b'"
    assert result.support == 0.5


def test_majority_splits_when_the_plurality_is_not_a_majority():
    result = decide(votes("a", "a", "b", "c", "d"), MAJORITY)
    assert result.status == "split"
    assert result.reason == "no majority: 'a' has 2 of 5 votes, needs 3"
    assert result.support == pytest.approx(0.4)


def test_three_way_tie():
    result = decide(votes(1, 2, 3), MAJORITY)
    assert result.status == "split"
    assert result.reason == "1 vs 1 vs 1 between 1, 2 and 3"


def test_bools_and_json_values_group():
    assert decide(votes(True, True, False), MAJORITY).value is True
    result = decide(votes({"x": 1}, {"x": 1}, {"x": 2}), MAJORITY)
    assert result.status == "agreed" and result.value == {"x": 1}


def test_quorum_agrees_with_enough_votes_even_without_a_majority():
    policy = VotePolicy(policy="quorum", quorum=2)
    result = decide(votes("a", "a", "b", "c", "d"), policy)
    assert result.status == "agreed" and result.value == "a"
    strict = decide(votes("a", "a", "b", "c", "d"), VotePolicy(policy="quorum", quorum=3))
    assert strict.status == "split"
    assert strict.reason == "no quorum: 'a' has 2 of 5 votes, needs 3"


def test_quorum_ties_split_and_default_is_a_majority():
    assert decide(votes("a", "a", "b", "b", "c"), VotePolicy(policy="quorum", quorum=2)).reason == (
        "2 vs 2 between 'a' and 'b'"
    )
    default = VotePolicy(policy="quorum")
    assert decide(votes("a", "a", "b"), default).status == "agreed"
    assert decide(votes("a", "a", "b", "c"), default).status == "split"


def test_confidence_lets_a_sure_minority_win():
    sure_minority = votes("a", "b", "b", confidences=[0.9, 0.2, 0.2])
    assert decide(sure_minority, MAJORITY).value == "b"
    result = decide(sure_minority, VotePolicy(policy="confidence"))
    assert result.status == "agreed" and result.value == "a"
    assert result.support == pytest.approx(0.9 / 1.3)
    assert result.groups[0]["weight"] == pytest.approx(0.9)


def test_confidence_threshold_is_strict_and_ties_split():
    even = votes("a", "b", confidences=[0.5, 0.5])
    assert decide(even, VotePolicy(policy="confidence")).reason.startswith("0.5 vs 0.5 between")
    result = decide(
        votes("a", "b", "c", confidences=[0.6, 0.3, 0.1]),
        VotePolicy(policy="confidence", threshold=0.6),
    )
    assert result.status == "split" and "60.0%" in result.reason
    nobody = decide(votes("a", "b", confidences=[0.0, 0.0]), VotePolicy(policy="confidence"))
    assert nobody.status == "split" and "confidence 0" in nobody.reason


def test_numeric_agrees_within_tolerance_and_ignores_an_outlier():
    result = decide(votes(3.0, 3.0000001, 9.0), VotePolicy(policy="numeric"))
    assert result.status == "agreed"
    assert result.value == pytest.approx(3.00000005, abs=1e-12)
    assert result.support == pytest.approx(2 / 3)
    assert result.groups[0]["agents"] == ["agent0", "agent1"]
    assert result.groups[1]["value"] == 9.0


def test_numeric_outside_tolerance_is_a_split():
    result = decide(votes(3.0, 3.1, 9.0), VotePolicy(policy="numeric", tolerance=0.01))
    assert result.status == "split"
    assert result.reason.startswith("1 vs 1 vs 1 between")
    wide = decide(votes(3.0, 3.1, 9.0), VotePolicy(policy="numeric", tolerance=0.2))
    assert wide.status == "agreed" and wide.value == pytest.approx(3.05)


def test_numeric_tie_and_relative_tolerance():
    tie = decide(votes(1, 1, 5, 5), VotePolicy(policy="numeric"))
    assert tie.status == "split" and tie.reason.startswith("2 vs 2 between")
    relative = VotePolicy(policy="numeric", tolerance=1e-3, relative=True)
    big = decide(votes(1_000_000.0, 1_000_400.0, 5.0), relative)
    assert big.status == "agreed" and big.value == pytest.approx(1_000_200.0)
    assert decide(votes(1.0, 1.0004, 5.0), relative).status == "agreed"
    assert decide(votes(0.001, 0.0011, 5.0), relative).status == "split"


def test_numeric_cluster_members_are_within_tolerance_of_their_median():
    # 0 and 2 are both within 1 of the centre 1, and the median of {0, 1, 2} is 1.
    result = decide(votes(0.0, 1.0, 2.0, 10.0), VotePolicy(policy="numeric", tolerance=1.0))
    assert result.status == "agreed" and result.value == 1.0 and result.support == 0.75
    # A chain drifts: 0..3 in steps of 1 cannot all sit within 1 of one median.
    chain = decide(votes(0.0, 1.0, 2.0, 3.0), VotePolicy(policy="numeric", tolerance=1.0))
    assert chain.status == "agreed" and chain.groups[0]["votes"] == 3


def test_numeric_refuses_non_numbers_with_a_reason():
    result = decide(votes(3.0, "three", True), VotePolicy(policy="numeric"))
    assert result.status == "split"
    assert result.reason == "numeric vote needs numbers: 'agent1' answered 'three'"
    assert decide(votes(1.0, float("nan")), VotePolicy(policy="numeric")).status == "split"


def test_bad_votes_and_policies_are_refused():
    with pytest.raises(EnsembleError, match="confidence must be between 0 and 1"):
        Vote("a", "x", 1.5)
    with pytest.raises(ValidationError):
        VotePolicy(policy="plurality")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        VotePolicy(quorum=0)
    with pytest.raises(ValidationError):
        VotePolicy(surprise=True)  # type: ignore[call-arg]
