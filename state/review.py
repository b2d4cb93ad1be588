"""Types shared by every review loop (research reviewer, content editor, solver verifier)."""

from __future__ import annotations

from typing import Literal

LoopOutcome = Literal["", "approved", "max_revisions", "stalled"]
"""How a review loop ended; empty while another revision round is due."""
