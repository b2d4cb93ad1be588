"""The offline model: a deterministic, extractive chat model that needs no network or key.

Only `OfflineChatModel` is public, and only the model factory (`ensemble.models`) uses it;
graphs and nodes never import this package (a ruff rule keeps it so), so none of its rules
runs when a real model does the work.
"""

from ensemble.offline.model import OfflineChatModel

__all__ = ["OfflineChatModel"]
