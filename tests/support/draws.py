"""How many of a property test's draws reach its real assertions: a strategy that drifts so
that every draw is refused early would otherwise pass while checking nothing."""

from __future__ import annotations

from collections import Counter

from hypothesis import event


class Draws:
    """Counts draws and the branches they reach; each count is also a hypothesis event
    (shown by `pytest --hypothesis-show-statistics`)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def drawn(self) -> None:
        self.counts["drawn"] += 1

    def reached(self, branch: str) -> None:
        self.counts[branch] += 1
        event(branch)

    def assert_share(self, branch: str, at_least: float) -> None:
        drawn = self.counts["drawn"]
        share = self.counts[branch] / drawn if drawn else 0.0
        print(f"{branch}: {self.counts[branch]} of {drawn} draws")
        assert share >= at_least, f"only {self.counts[branch]} of {drawn} draws reached {branch!r} " \
                                  f"(at least {at_least:.0%} must): {dict(self.counts)}"
