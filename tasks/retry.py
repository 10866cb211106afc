"""Backoff for builds given back to the queue after a temporary failure."""

from __future__ import annotations

import random

# First retry after about this long; doubling each time, up to the cap.
BASE_SECONDS = 2.0
CAP_SECONDS = 120.0


def backoff_seconds(attempt: int, *, rng: random.Random | None = None) -> float:
    """Seconds to wait before attempt ``attempt + 1``: exponential with full jitter."""
    ceiling = min(CAP_SECONDS, BASE_SECONDS * (2.0 ** max(0, attempt - 1)))
    return (rng or random.Random()).uniform(ceiling / 2, ceiling)
