"""One progress interface for every long step: a rich bar on a terminal, or nothing.

Library code calls `progress.task(description, total)` and `advance(n)`; the CLI decides
whether that draws (stderr is a terminal and not --quiet) or is silent.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class Task:
    def advance(self, n: int = 1) -> None:
        pass

    def update(self, *, total: int | None = None, completed: int | None = None) -> None:
        pass


class Progress:
    """Silent progress (the default for the Python API and non-terminals)."""

    @contextlib.contextmanager
    def task(self, description: str, total: int | None = None) -> Iterator[Task]:
        yield Task()


class RichProgress(Progress):
    def __init__(self):
        from rich.console import Console

        self.console = Console(stderr=True)

    @contextlib.contextmanager
    def task(self, description: str, total: int | None = None) -> Iterator[Task]:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as _P

        class _Rate(TextColumn):
            def render(self, task):  # files/s (or items/s) so users can compare runs
                speed = task.finished_speed or task.speed
                return f"{speed:,.0f}/s" if speed else ""

        bar = _P(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            _Rate(""),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        with bar:
            tid = bar.add_task(description, total=total)

            class _T(Task):
                def advance(self, n: int = 1) -> None:
                    bar.advance(tid, n)

                def update(self, *, total=None, completed=None) -> None:
                    bar.update(tid, total=total, completed=completed)

            yield _T()
