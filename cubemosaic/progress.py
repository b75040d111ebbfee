"""Progress of a long unit of work: "N/M done, rate, time left", as log lines and, on a terminal, a bar.

One reporter for every stage that counts its work (the cube's days, the months, the export's
tiles)::

    with Progress(len(tiles), label="export", unit="tiles", every_s=5) as p:
        for tile in tiles:
            write(tile)
            p.advance(name=f"tile {tile}")

Each :meth:`Progress.advance` logs a line (every advance, or at most every ``every_s`` seconds
and always the last), e.g. ``cube: day 2021-01-05 written [3/18], 0.8 days/s, about 19 s left``.
The rate and the time left count only the work done since the reporter started, so a resumed
run's steps already done do not make it look faster. When the stream (stderr) is a terminal, a
bar is redrawn in place below the log lines as well. The clock is injectable, for tests.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["Progress", "duration_text", "rate_text"]

#: Characters of the bar drawn on a terminal.
BAR_WIDTH = 24
#: Shortest interval between two redraws of the bar, in seconds (the last is always drawn).
REDRAW_S = 0.2

_log = logging.getLogger(__name__)


def duration_text(seconds: float) -> str:
    """A duration as a person reads it: ``under 1 s``, ``45 s``, ``3 min 20 s``, ``2 h 05 min``."""
    s = max(0, round(seconds))
    if s < 1:
        return "under 1 s"
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def rate_text(per_second: float, unit: str = "") -> str:
    """A rate per second (``2.5 days/s``), or per minute below one every ten seconds (``3 tiles/min``)."""
    unit = f" {unit}" if unit else ""
    if per_second >= 0.1:
        return f"{per_second:.2g}{unit}/s" if per_second < 100 else f"{per_second:.0f}{unit}/s"
    return f"{per_second * 60:.2g}{unit}/min"


class Progress:
    """Counts ``total`` units of work, ``done`` of them already done (a resumed run's).

    ``label`` starts each line (the stage: ``cube``); ``unit`` names what is counted in the rate
    (``days``); ``verb`` what happened to a unit (``written``). ``every_s``: None logs every
    advance; a number logs at most every so many seconds (and always the last). ``stream``: where
    the bar goes when it is a terminal (``sys.stderr`` by default; ``bar=False`` never draws one).
    """

    def __init__(
        self,
        total: int,
        label: str,
        *,
        done: int = 0,
        unit: str = "",
        verb: str = "done",
        every_s: float | None = None,
        log: logging.Logger | None = None,
        stream: TextIO | None = None,
        bar: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = max(0, int(total))
        self.label = label
        self.done = int(done)
        self.unit = unit
        self.verb = verb
        self.every_s = every_s
        self._log = log or _log
        self._stream = stream if stream is not None else sys.stderr
        self._bar = _is_terminal(self._stream) if bar is None else bar
        self._clock = clock
        self._start = clock()
        self._first = self.done
        self._logged_at: float | None = None
        self._lock = threading.Lock()
        self._drawn_at: float | None = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- figures
    @property
    def elapsed(self) -> float:
        return self._clock() - self._start

    @property
    def rate(self) -> float | None:
        """Units per second since the reporter started; None before the first."""
        counted, elapsed = self.done - self._first, self.elapsed
        return counted / elapsed if counted > 0 and elapsed > 0 else None

    @property
    def left_s(self) -> float | None:
        """Seconds left at the rate so far; None while the rate is unknown."""
        rate = self.rate
        return max(0, self.total - self.done) / rate if rate else None

    def text(self, name: str | None = None) -> str:
        """The line for now: ``label: name verb [done/total], rate, about T left`` (without a name
        ``label: done/total verb, ...``)."""
        count = f"[{self.done}/{self.total}]"
        head = (
            f"{self.label}: {name} {self.verb} {count}"
            if name
            else f"{self.label}: {self.done}/{self.total} {self.verb}"
        )
        rate, left = self.rate, self.left_s
        if rate is None:
            return head
        if self.done >= self.total:
            return f"{head}, {rate_text(rate, self.unit)}, in {duration_text(self.elapsed)}"
        return f"{head}, {rate_text(rate, self.unit)}, about {duration_text(left or 0)} left"

    # ----------------------------------------------------------------- reporting
    def advance(self, n: int = 1, name: str | None = None) -> None:
        """``n`` more units done (the last of them ``name``, if given): a log line when due, the bar redrawn."""
        with self._lock:  # tiles side by side advance the same reporter
            self.done += n
            done = self.done
        now = self._clock()
        last = done >= self.total
        if self.every_s is None or last or self._logged_at is None or now - self._logged_at >= self.every_s:
            self._logged_at = now
            self._clear()
            self._log.info("%s", self.text(name))
        if self._bar and (last or self._drawn_at is None or now - self._drawn_at >= REDRAW_S):
            self._draw(now)

    def close(self) -> None:
        """Take the bar away (the last log line stays)."""
        self._clear()

    def bar_text(self) -> str:
        """The bar as drawn on a terminal: ``label [#####.....] 3/18 0.8 days/s 19 s left``."""
        share = self.done / self.total if self.total else 1.0
        filled = min(BAR_WIDTH, round(share * BAR_WIDTH))
        rate, left = self.rate, self.left_s
        tail = f" {rate_text(rate, self.unit)} {duration_text(left or 0)} left" if rate else ""
        return f"{self.label} [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {self.done}/{self.total}{tail}"

    def _draw(self, now: float) -> None:
        self._drawn_at = now
        self._stream.write(f"\r\x1b[K{self.bar_text()}")
        self._stream.flush()

    def _clear(self) -> None:
        if self._bar and self._drawn_at is not None:
            self._stream.write("\r\x1b[K")
            self._stream.flush()
            self._drawn_at = None


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or stand-in stream
        return False
