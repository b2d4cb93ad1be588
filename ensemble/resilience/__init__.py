"""Keeping a run going when some of its agents or services keep failing."""

from __future__ import annotations

from ensemble.resilience.breaker import BOARD, BreakerBoard, BreakerState, CircuitBreaker

__all__ = ["BOARD", "BreakerBoard", "BreakerState", "CircuitBreaker"]
