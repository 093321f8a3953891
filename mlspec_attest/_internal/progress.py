"""A quiet progress line for long hashing: stderr only, TTY only, only after a second.

Pipelines run in CI logs where a redrawn line is noise, so the reporter stays
silent unless stderr is a terminal; short jobs never flash a bar. Updates come
from whichever thread made progress (no extra thread, so forking a process pool
stays safe) and are rate-limited, so calling ``advance`` per 4 MiB buffer is cheap.
``MLSPEC_PROGRESS=0`` turns it off, ``=1`` forces it on (tests, demos).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import TextIO

DELAY = 1.0  # seconds before the first line: short jobs stay silent
INTERVAL = 0.1  # at most ten redraws a second


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def wanted(stream: TextIO | None = None) -> bool:
    """True when a progress line may be drawn on ``stream`` (default stderr)."""
    setting = os.environ.get("MLSPEC_PROGRESS", "").strip().lower()
    if setting in ("0", "no", "false", "off"):
        return False
    if setting in ("1", "yes", "true", "on"):
        return True
    stream = stream if stream is not None else sys.stderr
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class NullProgress:
    """The no-op reporter used off a terminal: costs one method call per update."""

    enabled = False

    def advance(self, files: int = 0, nbytes: int = 0) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> NullProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Progress(NullProgress):
    """files done / bytes done / rate on one redrawn stderr line."""

    enabled = True

    def __init__(self, total_files: int, total_bytes: int, *, label: str = "hashing",
                 stream: TextIO | None = None, delay: float = DELAY, interval: float = INTERVAL):
        self.total_files, self.total_bytes, self.label = total_files, total_bytes, label
        self.stream = stream if stream is not None else sys.stderr
        self.delay, self.interval = delay, interval
        self.files = self.nbytes = 0
        self.start = time.monotonic()
        self._last = 0.0
        self._drawn = False
        self._lock = threading.Lock()

    def advance(self, files: int = 0, nbytes: int = 0) -> None:
        with self._lock:
            self.files += files
            self.nbytes += nbytes
            now = time.monotonic()
            if now - self.start >= self.delay and now - self._last >= self.interval:
                self._last = now
                self._draw(now)

    def line(self, now: float | None = None) -> str:
        elapsed = max((now or time.monotonic()) - self.start, 1e-9)
        rate = self.nbytes / elapsed
        pct = f"{100 * self.nbytes / self.total_bytes:5.1f}% " if self.total_bytes else ""
        return (f"{self.label}: {pct}{self.files}/{self.total_files} files, "
                f"{_human(self.nbytes)}/{_human(self.total_bytes)}, {_human(rate)}/s")

    def _draw(self, now: float) -> None:
        try:
            self.stream.write("\r\x1b[2K" + self.line(now))
            self.stream.flush()
            self._drawn = True
        except (OSError, ValueError):
            pass

    def close(self) -> None:
        with self._lock:
            if self._drawn:
                self._draw(time.monotonic())
                try:
                    self.stream.write("\n")
                    self.stream.flush()
                except (OSError, ValueError):
                    pass
                self._drawn = False


def reporter(total_files: int, total_bytes: int, *, label: str = "hashing",
             stream: TextIO | None = None) -> NullProgress:
    """A Progress on a terminal, else the no-op NullProgress."""
    if wanted(stream):
        return Progress(total_files, total_bytes, label=label, stream=stream)
    return NullProgress()
