"""Progress of a probe: one-line messages and a rich bar for every step expected to take
over a second (the CLI passes :class:`RichProgress`; library callers get silence or a
plain ``say(str)`` callable)."""

from __future__ import annotations

import contextlib
from typing import Callable

BAR_MIN_S = 1.0   # steps expected to take longer than this get a bar


class Progress:
    """No-op base: ``say(message)`` and ``step(label, total, est_s)`` -> ``advance()``."""

    def say(self, message: str) -> None:
        return None

    @contextlib.contextmanager
    def step(self, label: str, total: int, est_s: float = float("inf")):
        yield lambda n=1: None


class SayProgress(Progress):
    """Wraps a ``say(str)`` callable (the older progress interface)."""

    def __init__(self, say: Callable[[str], None]):
        self._say = say

    def say(self, message: str) -> None:
        self._say(message)

    @contextlib.contextmanager
    def step(self, label: str, total: int, est_s: float = float("inf")):
        self._say(label)
        yield lambda n=1: None


class RichProgress(Progress):
    """Messages on the console; a transient rich bar for steps estimated above 1 s."""

    def __init__(self, console):
        self.console = console

    def say(self, message: str) -> None:
        self.console.print(f"[dim]probe: {message}[/]")

    @contextlib.contextmanager
    def step(self, label: str, total: int, est_s: float = float("inf")):
        self.say(label)
        if est_s <= BAR_MIN_S or total <= 1:
            yield lambda n=1: None
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, \
            TextColumn, TimeElapsedColumn
        with Bar(TextColumn("  {task.description}"), BarColumn(), MofNCompleteColumn(),
                 TimeElapsedColumn(), console=self.console, transient=True) as bar:
            task = bar.add_task(label, total=total)
            yield lambda n=1: bar.advance(task, n)


def as_progress(progress) -> Progress:
    if progress is None:
        return Progress()
    if isinstance(progress, Progress):
        return progress
    return SayProgress(progress)
