"""Handing a race's runs to idle workers (`RaceSource`, for the local pool's task source).

What the race decides is `analysis.racing.replay`, a pure function of the stored results; which runs
are handed out here can depend on timing (a speculative run of the next round keeps a core busy), what
is decided cannot."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ..analysis.racing import Race
from ..store.db import FINISHED


class RaceSource:
    """Hands runs to idle workers as the race needs them: this round's first, then (only while some of
    this round's runs are still training) the next round's runs of the configurations still racing,
    best first, so that no core idles at the end of a round. Which runs are handed out can depend on
    timing; what the race decides cannot (see the module docstring)."""

    def __init__(self, state: Callable[[], tuple[Race, dict[str, str]]], make_task: Callable[[str], object],
                 candidates: Iterable = ()):
        self._state, self._make = state, make_task
        self.candidates = list(candidates)  # every run it may hand out (anything with a .config)
        self.handed: list[str] = []

    def next_task(self):
        race, statuses = self._state()
        handed = set(self.handed)
        for key in race.needed:
            if key not in handed:
                return self._hand(key)
        in_flight = [k for k in self.handed if statuses.get(k) not in (*FINISHED, "failed")]
        if in_flight:
            for key in race.ahead:
                if key not in handed:
                    return self._hand(key)
        return None

    def _hand(self, key: str):
        self.handed.append(key)
        return self._make(key)

    @property
    def speculative(self) -> list[str]:
        return list(self.handed)
