"""The wait before a retry (sans-IO), one formula for end-function steps and
control-event deliveries."""

from __future__ import annotations

__all__ = ["delay_s"]


def delay_s(attempts: int, base_s: float, max_s: float, jitter: float) -> float:
    """The wait (s) after the ``attempts``-th try failed (1 for the first):
    ``base_s * 2 ** (attempts - 1)``, at most ``max_s``, then scaled by ``0.5 +
    jitter / 2`` (``jitter`` in [0, 1): "equal jitter", so tries that failed
    together spread out)."""
    doubled = base_s * 2 ** min(max(attempts - 1, 0), 62)
    return min(max_s, doubled) * (0.5 + jitter / 2)
