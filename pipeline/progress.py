"""Progress of a stage: a live bar (tasks, docs/s) on a terminal, plain log lines otherwise."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

log = logging.getLogger("zyda")


class StageProgress:
    def __init__(self, stage_id: str, total: int, done: int, interactive: bool | None = None,
                 log_every_s: float = 10.0):
        self.stage_id, self.total, self.done = stage_id, total, done
        self.docs = 0
        self.started = time.perf_counter()
        self._last_log = 0.0
        self._log_every_s = log_every_s
        self._bar = None
        if interactive if interactive is not None else sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), transient=False)
            self._bar.start()
            self._task = self._bar.add_task(stage_id, total=total, completed=done, rate="")

    def rate(self) -> float:
        return self.docs / max(time.perf_counter() - self.started, 1e-9)

    def update(self, marker: dict[str, Any]) -> None:
        self.done += 1
        self.docs += sum(s["docs_in"] for s in marker["stats"].values())
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, rate=f"{self.docs:,} docs {self.rate():,.0f} docs/s")
            return
        now = time.perf_counter()
        if now - self._last_log >= self._log_every_s or self.done == self.total:
            self._last_log = now
            log.info("%s: %d/%d tasks, %s docs, %.0f docs/s", self.stage_id, self.done, self.total,
                     f"{self.docs:,}", self.rate())

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
