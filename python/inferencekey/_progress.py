"""The default readiness view of ``wait_until_ready``.

On a terminal it keeps one live line: a dot per phase (filled once reached), the
workload, the current phase and message, and the seconds elapsed, redrawn every second
even while no event arrives. Elsewhere (files, pipes, pytest capture, notebooks) it
writes one plain line per event. It writes to ``sys.stderr`` as found when the wait
starts, so redirection and capture see it, and it never lets a display failure break
the wait.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from .types import ReadinessEvent

_PHASES = ("scheduling", "provisioning", "bootstrapping", "ready")


class ProgressView:
    def __init__(self, workload_slug: str, stream: TextIO | None = None) -> None:
        self._slug = workload_slug
        self._stream = stream if stream is not None else sys.stderr
        self._start = time.monotonic()
        self._event: ReadinessEvent | None = None
        self._reached = -1
        self._live = False
        try:
            self._tty = bool(self._stream.isatty())
        except (AttributeError, ValueError, OSError):
            self._tty = False
        self._done, self._pending, self._failed = "●", "○", "✗"
        encoding = getattr(self._stream, "encoding", None) or "ascii"
        try:
            "●○✗·".encode(encoding)
            self._sep = "·"
        except (LookupError, UnicodeEncodeError):
            self._done, self._pending, self._failed, self._sep = "#", ".", "x", "-"

    def _write(self, text: str) -> None:
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError):
            pass

    def _elapsed(self) -> float:
        return time.monotonic() - self._start

    def _dots(self, failed: bool) -> str:
        marks = [self._done if i <= self._reached else self._pending for i in range(len(_PHASES))]
        if failed:
            marks[min(self._reached + 1, len(marks) - 1)] = self._failed
        return "".join(marks)

    def _draw(self, failed: bool = False) -> None:
        event = self._event
        if event is None:
            return
        step = f" [{event.step}]" if event.step else ""
        line = (
            f"{self._dots(failed)} {self._slug} {self._sep} {event.phase}{step}: "
            f"{event.message} ({self._elapsed():.0f}s)"
        )
        self._write("\r\x1b[2K" + line)
        self._live = True

    def update(self, event: ReadinessEvent) -> None:
        self._event = event
        if event.phase in _PHASES:
            self._reached = max(self._reached, _PHASES.index(event.phase))
        if self._tty:
            self._draw(failed=event.phase == "error")
        else:
            step = f" [{event.step}]" if event.step else ""
            self._write(
                f"{self._slug}: {event.phase}{step}: {event.message} ({self._elapsed():.1f}s)\n"
            )

    def tick(self) -> None:
        if self._tty:
            self._draw()

    def finish(self, ok: bool, why: str | None = None) -> None:
        if self._tty and self._live:
            if not ok:
                self._draw(failed=True)
            self._write("\n")
        if not ok and why and not self._tty:
            self._write(f"{self._slug}: {why}\n")
