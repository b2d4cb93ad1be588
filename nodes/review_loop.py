"""The review-loop decision every reviewer shares: approve, revise, or stop honestly.

The research reviewer, the content editor (and the solver's verifier) all end a round the same
way: approved; otherwise another round on the named issues, unless the revision limit is reached,
nothing was named (another round cannot help), or the same issues came back (a stall).
"""

from __future__ import annotations

from collections.abc import Sequence

from ensemble.identity import same_key
from ensemble.state.review import LoopOutcome


def decide(
    *,
    approved: bool,
    issues: Sequence[str],
    revision: int,
    max_revisions: int,
    previous_issues: Sequence[str] | None,
) -> LoopOutcome:
    """Return how the loop ends now, or "" for another round on `issues`.

    Args:
        approved: The reviewer's verdict (model and deterministic checks together).
        issues: What the reviewer named to fix this round.
        revision: Revision rounds already run.
        max_revisions: The bound on revision rounds.
        previous_issues: What the previous round named (None on the first review).
    """
    if approved:
        return "approved"
    if revision >= max_revisions:
        return "max_revisions"
    if not issues:
        return "stalled"  # rejected, yet nothing named to fix: another round cannot help
    if previous_issues is not None and _keys(issues) == _keys(previous_issues):
        return "stalled"
    return ""


def _keys(items: Sequence[str]) -> frozenset[str]:
    return frozenset(same_key(i) for i in items)
