"""Progress of a Spark run on stderr: the current step and its Spark stages' tasks."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kabuguard.progress import progress


class _Watch:
    def __init__(self, sc: Any, quiet: bool) -> None:
        self.sc = sc
        self.step = "starting"
        self.timings: dict[str, float] = {}
        self._since = time.perf_counter()
        self._stop = threading.Event()
        self._bar = progress(quiet)
        self._task = self._bar.add_task("spark", total=None)
        self._thread = threading.Thread(target=self._poll, daemon=True) if not quiet else None

    def begin(self, step: str) -> None:
        """Name the next Spark jobs (also shown in the Spark UI); times the step before."""
        self._close()
        self.step = step
        self.sc.setJobDescription(step)

    def _close(self) -> None:
        now = time.perf_counter()
        self.timings[self.step] = self.timings.get(self.step, 0.0) + now - self._since
        self._since = now

    def _poll(self) -> None:
        tracker = self.sc.statusTracker()
        while not self._stop.wait(0.5):
            done = total = 0
            names = []
            for stage_id in tracker.getActiveStageIds():
                info = tracker.getStageInfo(stage_id)
                if info is None:
                    continue
                done += info.numCompletedTasks
                total += info.numTasks
                names.append(str(stage_id))
            label = f"spark: {self.step}" + (f" (stages {', '.join(sorted(names))})" if names else "")
            self._bar.update(self._task, description=label, completed=done, total=total or None)


@contextmanager
def watch(sc: Any, quiet: bool = False) -> Iterator[_Watch]:
    """Polls Spark's status tracker twice a second while the body runs."""
    w = _Watch(sc, quiet)
    with w._bar:
        if w._thread is not None:
            w._thread.start()
        try:
            yield w
        finally:
            w._close()
            w._stop.set()
            if w._thread is not None:
                w._thread.join()
            sc.setJobDescription(None)
