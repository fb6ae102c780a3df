"""Progress of a slow step (a dataset scan, a checkpoint load): told at every item, shown a few times a second."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

Progress = Callable[[int, int], None]
"""Called with (done, total) before each item of a slow step; raising from it stops the step there, which
is how a cancelled run or an abandoned scan stops before its next file or tensor."""

SHOW_INTERVAL = 0.2  # seconds between two updates of the same line


class Pace:
    """At most once every ``interval`` seconds, the first time at once: ``due`` says whether now is such a
    time (and counts it as one)."""

    def __init__(self, interval: float = SHOW_INTERVAL) -> None:
        self.interval = interval
        self.last = -math.inf

    def due(self) -> bool:
        now = time.monotonic()
        if now - self.last < self.interval:
            return False
        self.last = now
        return True


class Paced:
    """Pass (done, total) on to ``show`` at the pace of ``Pace``: a scan of thousands of small files would
    otherwise send thousands of updates to one line of a screen."""

    def __init__(self, show: Progress, interval: float = SHOW_INTERVAL) -> None:
        self.show = show
        self.pace = Pace(interval)

    def __call__(self, done: int, total: int) -> None:
        if self.pace.due():
            self.show(done, total)
