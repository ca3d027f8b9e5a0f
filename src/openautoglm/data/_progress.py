"""A progress bar on stderr (rich) that is a no-op when disabled or not on a terminal."""

from __future__ import annotations

import contextlib
import sys
from typing import Any, Iterator


class _NullBar:
    def advance(self, n: int = 1) -> None:
        pass


class _RichBar:
    def __init__(self, progress: Any, task: Any) -> None:
        self._progress, self._task = progress, task

    def advance(self, n: int = 1) -> None:
        self._progress.advance(self._task, n)


@contextlib.contextmanager
def progress_bar(description: str, total: int | None = None, enabled: bool = True) -> Iterator[Any]:
    """``with progress_bar("profile", total) as bar: bar.advance(n)``."""
    if not enabled or not sys.stderr.isatty():
        yield _NullBar()
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        yield _RichBar(progress, progress.add_task(description, total=total))
