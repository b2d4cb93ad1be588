"""Conflict resolution among agents: replicas vote, a policy decides or reports a split."""

from __future__ import annotations

from ensemble.voting.policies import (
    Vote,
    VotePolicy,
    VoteResult,
    VotingError,
    decide,
    vote_key,
)

__all__ = ["Vote", "VotePolicy", "VoteResult", "VotingError", "decide", "vote_key"]
