"""The publisher's refusals: one-line messages, shown to the user like every `EnsembleError`."""

from __future__ import annotations

from ensemble.errors import EnsembleError


class PublishError(EnsembleError):
    """A piece was not published: unsafe name or folder, a clash, a journal problem."""


class SlugTakenError(PublishError):
    """The slug is already reserved in this folder by another draft (pick the next one)."""
