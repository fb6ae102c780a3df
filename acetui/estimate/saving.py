"""How often a running run's record is rewritten: after every batch while that costs little, and within a
set share of the run's time once the record has grown.

The record holds every batch's norm of every module, and each save rewrites and fsyncs all of it: a
2B run's record is ~5 MB at 1,000 batches and takes ~0.25 s to write, more than a 90 ms GPU batch, so
saving after every batch made a long run several times slower, quadratically in its batch count.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

SAVE_SHARE = 0.1  # at most about this share of a run's time goes to rewriting its record


class SaveBudget:
    """After a save that took ``s`` seconds, a batch's save is due once ``s * (1 / share - 1)`` seconds have
    passed since it ended. Saving then takes at most ``share`` of the run's time; batches slower than that
    are each saved, so a killed run loses at most the batch in flight, or else the last few seconds'."""

    def __init__(self, share: float = SAVE_SHARE, clock: Callable[[], float] = time.perf_counter) -> None:
        self.share = share
        self.clock = clock
        self.ended = -math.inf
        self.took = 0.0

    def due(self) -> bool:
        return self.clock() - self.ended >= self.took * (1 / self.share - 1)

    def spent(self, started: float) -> None:
        """Note a save that began at ``started`` (a ``clock`` reading) and has just ended."""
        self.ended = self.clock()
        self.took = self.ended - started
