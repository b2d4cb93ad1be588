"""Conflict resolution among agents: group their answers, then apply one voting policy.

Replicated agents rarely answer word for word alike, so answers are compared the way the same
item is compared everywhere in the project (text through `same_key`), and numbers within a
tolerance. A vote either agrees on one value or says plainly why it split: it never picks
silently between equals.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ensemble.errors import EnsembleError
from ensemble.identity import same_key

Status = Literal["agreed", "split", "empty"]


class VotingError(EnsembleError, ValueError):
    """A vote that cannot be counted, such as a confidence outside 0..1."""


@dataclass(frozen=True)
class Vote:
    """One agent's answer and how sure it is.

    Attributes:
        agent: Who answered; reported back in the groups so a split can be traced.
        value: The answer: text, a number, a bool or a JSON-like value.
        confidence: 0..1; only the confidence policy weighs it, the others count heads.
    """

    agent: str
    value: Any
    confidence: float = 1.0

    def __post_init__(self) -> None:
        """Refuse a confidence outside 0..1 now, rather than skewing a later count."""
        ok = isinstance(self.confidence, int | float) and not isinstance(self.confidence, bool)
        if not ok or not 0.0 <= self.confidence <= 1.0:
            raise VotingError(
                f"vote of {self.agent!r}: confidence must be between 0 and 1, "
                f"got {self.confidence!r}"
            )


class VotePolicy(BaseModel):
    """How a set of votes becomes one answer.

    Attributes:
        policy: majority (strictly more than half the votes), quorum (at least `quorum`
            votes), confidence (more than `threshold` of the summed confidence) or numeric
            (more than half the votes within `tolerance` of their median).
        quorum: Votes that must agree under the quorum policy; default a majority of votes.
        threshold: Share of the total confidence the winner must strictly exceed.
        tolerance: Numeric policy: how far apart two answers may be and still agree.
        relative: Numeric policy: read `tolerance` relative to the values' magnitude.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    policy: Literal["majority", "quorum", "confidence", "numeric"] = "majority"
    quorum: int | None = Field(default=None, ge=1)
    threshold: float = Field(default=0.5, ge=0.0, lt=1.0)
    tolerance: float = Field(default=1e-6, ge=0.0)
    relative: bool = False


@dataclass(frozen=True)
class VoteResult:
    """The outcome of a vote, with enough detail to explain it to a person.

    Attributes:
        status: agreed, split (no value won, see `reason`) or empty (no votes).
        value: The agreed value (for numeric, the median of the agreeing cluster), else None.
        support: Share of the votes (of the confidence, for the confidence policy) behind the
            value; for a split, behind the leading group.
        groups: Each distinct value, leading first: `value`, `agents`, `votes`, `weight`
            (summed confidence).
        reason: One human-readable line saying why the vote ended as it did.
    """

    status: Status
    value: Any | None
    support: float
    groups: list[dict[str, Any]]
    reason: str


def vote_key(value: Any) -> tuple[str, Any]:
    """The key under which two answers count as the same value.

    Text goes through `same_key` ("Paris." is "paris"), numbers compare as floats (1 is 1.0),
    bools stay bools (True is not 1), anything else as canonical JSON.
    """
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float):
        number = _as_float(value)
        if number is None or math.isnan(number):
            return ("number", repr(value))
        return ("number", number)
    if isinstance(value, str):
        return ("text", same_key(value))
    return ("json", json.dumps(value, sort_keys=True, separators=(",", ":"), default=str))


def decide(votes: Sequence[Vote], policy: VotePolicy) -> VoteResult:
    """Apply `policy` to `votes`; ties and missing majorities end as a split, never a guess."""
    if not votes:
        return VoteResult("empty", None, 0.0, [], "no votes")
    if policy.policy == "numeric":
        return _by_tolerance(votes, policy)
    if policy.policy == "confidence":
        return _by_confidence(votes, policy.threshold)
    needed = len(votes) // 2 + 1
    if policy.policy == "quorum" and policy.quorum is not None:
        needed = policy.quorum
    return _by_count(votes, needed, policy.policy)


def _by_count(votes: Sequence[Vote], needed: int, label: str) -> VoteResult:
    groups = _group(votes)
    top, total = groups[0], len(votes)
    support = top["votes"] / total
    if tie := _tied_on_votes(groups):
        return _split(groups, support, tie)
    if top["votes"] < needed:
        reason = (
            f"no {label}: {_show(top['value'])} has {top['votes']} of {total} votes, needs {needed}"
        )
        return _split(groups, support, reason)
    reason = f"{_show(top['value'])} has {top['votes']} of {total} votes ({label} needs {needed})"
    return VoteResult("agreed", top["value"], support, groups, reason)


def _by_confidence(votes: Sequence[Vote], threshold: float) -> VoteResult:
    groups = sorted(_group(votes), key=lambda g: -g["weight"])
    total = sum(v.confidence for v in votes)
    if total <= 0.0:
        return _split(groups, 0.0, "no confidence: every vote has confidence 0")
    top = groups[0]
    tied = [g for g in groups if math.isclose(g["weight"], top["weight"])]
    share = top["weight"] / total
    if len(tied) > 1:
        amounts = [f"{g['weight']:.3g}" for g in tied]
        return _split(groups, share, _tie(amounts, tied) + " in confidence")
    if share <= threshold or math.isclose(share, threshold):  # 0.6 / (0.6 + 0.3 + 0.1) > 0.6
        reason = (
            f"no value carries more than {threshold:.1%} of the confidence: "
            f"{_show(top['value'])} has {share:.1%}"
        )
        return _split(groups, share, reason)
    reason = (
        f"{_show(top['value'])} carries {share:.1%} of the confidence (needs > {threshold:.1%})"
    )
    return VoteResult("agreed", top["value"], share, groups, reason)


def _by_tolerance(votes: Sequence[Vote], policy: VotePolicy) -> VoteResult:
    for vote in votes:
        if not _is_number(vote.value):
            reason = f"numeric vote needs numbers: {vote.agent!r} answered {_show(vote.value)}"
            return _split(_group(votes), 0.0, reason)
    values = [float(v.value) for v in votes]
    close = _closeness(policy.tolerance, policy.relative)
    clusters = _clusters(values, close)
    groups: list[dict[str, Any]] = [
        {
            "value": centre,
            "agents": [votes[i].agent for i in members],
            "votes": len(members),
            "weight": sum(votes[i].confidence for i in members),
        }
        for members, centre in clusters
    ]
    top, total = groups[0], len(votes)
    support = top["votes"] / total
    within = f"{'relative ' if policy.relative else ''}tolerance {policy.tolerance:g}"
    if tie := _tied_on_votes(groups):
        return _split(groups, support, f"{tie} ({within})")
    if top["votes"] * 2 <= total:
        reason = (
            f"no majority within {within}: the largest cluster has {top['votes']} of {total} "
            f"votes around {_show(top['value'])}"
        )
        return _split(groups, support, reason)
    reason = f"{top['votes']} of {total} votes agree on {_show(top['value'])} within {within}"
    return VoteResult("agreed", top["value"], support, groups, reason)


def _clusters(
    values: list[float], close: Callable[[float, float], bool]
) -> list[tuple[list[int], float]]:
    """Partition `values` into clusters, largest first: each within tolerance of its median.

    Each remaining value is tried as a centre; the values close to it form a candidate, from
    which the value farthest from the candidate's median is dropped until every member is close
    to that median. The largest candidate wins (ties: smaller spread, then the earlier centre).
    """

    def rank(candidate: tuple[list[int], float]) -> tuple[int, float]:
        picked = [values[i] for i in candidate[0]]
        return -len(picked), max(picked) - min(picked)

    remaining = list(range(len(values)))
    clusters: list[tuple[list[int], float]] = []
    while remaining:
        candidates = [
            _settle([i for i in remaining if close(values[i], values[centre])], values, close)
            for centre in remaining
        ]
        best = min(candidates, key=rank)  # the first of equals: the earlier centre
        clusters.append(best)
        remaining = [i for i in remaining if i not in best[0]]
    return clusters


def _settle(
    members: list[int], values: list[float], close: Callable[[float, float], bool]
) -> tuple[list[int], float]:
    """Drop the farthest member until all are close to the members' median."""
    while True:
        median = statistics.median(values[i] for i in members)
        far = [i for i in members if not close(values[i], median)]
        if not far:
            return members, median
        farthest = max(far, key=lambda i: (abs(values[i] - median), i))
        members = [i for i in members if i != farthest]


def _closeness(tolerance: float, relative: bool) -> Callable[[float, float], bool]:
    if relative:
        return lambda a, b: math.isclose(a, b, rel_tol=tolerance, abs_tol=0.0)
    return lambda a, b: abs(a - b) <= tolerance


def _group(votes: Sequence[Vote]) -> list[dict[str, Any]]:
    """Votes grouped by `vote_key`, most votes first, then in order of first appearance."""
    groups: dict[tuple[str, Any], dict[str, Any]] = {}
    for vote in votes:
        group = groups.setdefault(
            vote_key(vote.value), {"value": vote.value, "agents": [], "votes": 0, "weight": 0.0}
        )
        group["agents"].append(vote.agent)
        group["votes"] += 1
        group["weight"] += vote.confidence
    return sorted(groups.values(), key=lambda g: -g["votes"])


def _split(groups: list[dict[str, Any]], support: float, reason: str) -> VoteResult:
    return VoteResult("split", None, support, groups, reason)


def _tied_on_votes(groups: list[dict[str, Any]]) -> str | None:
    """The tie between the leading groups when they have as many votes, else None."""
    tied = [g for g in groups if g["votes"] == groups[0]["votes"]]
    return _tie([str(g["votes"]) for g in tied], tied) if len(tied) > 1 else None


def _tie(amounts: list[str], groups: list[dict[str, Any]]) -> str:
    """E.g. "2 vs 2 between 'a' and 'b'"."""
    shown = [_show(g["value"]) for g in groups]
    return f"{' vs '.join(amounts)} between {', '.join(shown[:-1])} and {shown[-1]}"


def _show(value: Any, limit: int = 60) -> str:
    text = repr(value) if isinstance(value, str | float) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    number = _as_float(value)
    return number is not None and math.isfinite(number)


def _as_float(value: int | float) -> float | None:
    try:
        return float(value)
    except OverflowError:
        return None
