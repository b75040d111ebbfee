"""The progress reporter: counts, rate and time left from an injected clock (no sleeps), log lines, the bar."""

from __future__ import annotations

import io
import logging

import pytest

from cubemosaic.progress import Progress, duration_text, rate_text


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.4, "under 1 s"), (45, "45 s"), (200, "3 min 20 s"), (7500, "2 h 05 min")]
)
def test_duration_text(seconds, text):
    assert duration_text(seconds) == text


def test_rate_text():
    assert rate_text(2.5, "days") == "2.5 days/s"
    assert rate_text(0.05, "tiles") == "3 tiles/min"
    assert rate_text(250) == "250/s"


def test_rate_and_time_left_from_the_clock(caplog):
    clock = Clock()
    with caplog.at_level(logging.INFO, logger="cubemosaic.progress"):
        p = Progress(10, label="export", unit="tiles", clock=clock, bar=False)
        assert p.rate is None and p.text() == "export: 0/10 done"
        clock.now += 4
        p.advance(2)
        assert p.rate == pytest.approx(0.5)
        assert p.left_s == pytest.approx(16)
        clock.now += 4
        p.advance(2, name="tile 3")
    assert caplog.messages == [
        "export: 2/10 done, 0.5 tiles/s, about 16 s left",
        "export: tile 3 done [4/10], 0.5 tiles/s, about 12 s left",
    ]


def test_a_resumed_runs_steps_do_not_count_in_the_rate(caplog):
    clock = Clock()
    with caplog.at_level(logging.INFO, logger="cubemosaic.progress"):
        p = Progress(18, label="cube", done=6, unit="days", verb="written", clock=clock, bar=False)
        clock.now += 10
        p.advance(name="day 2021-01-07")
    assert caplog.messages == ["cube: day 2021-01-07 written [7/18], 0.1 days/s, about 1 min 50 s left"]


def test_the_last_line_gives_the_total_time(caplog):
    clock = Clock()
    with caplog.at_level(logging.INFO, logger="cubemosaic.progress"):
        with Progress(2, label="composite", unit="months", verb="written", clock=clock, bar=False) as p:
            clock.now += 30
            p.advance(name="month 2021-01")
            clock.now += 30
            p.advance(name="month 2021-02")
    assert caplog.messages[-1] == "composite: month 2021-02 written [2/2], 2 months/min, in 1 min 00 s"


def test_every_s_logs_at_most_so_often_and_always_the_last(caplog):
    clock = Clock()
    with caplog.at_level(logging.INFO, logger="cubemosaic.progress"):
        p = Progress(100, label="export", every_s=5, clock=clock, bar=False)
        for _ in range(100):
            clock.now += 0.5
            p.advance()
    done = [m.split()[1] for m in caplog.messages]
    assert done[0] == "1/100" and done[-1] == "100/100"
    assert len(done) == 1 + 100 // 10  # the first, then one every 10 advances (5 s), the last among them


def test_a_bar_on_a_terminal_only():
    clock = Clock()
    tty = Terminal()
    with Progress(4, label="cube", unit="days", clock=clock, stream=tty) as p:
        clock.now += 2
        p.advance()
        assert tty.getvalue().endswith("\r\x1b[Kcube [######..................] 1/4 0.5 days/s 6 s left")
    assert tty.getvalue().endswith("\r\x1b[K"), "closing takes the bar away"
    pipe = io.StringIO()
    with Progress(4, label="cube", clock=clock, stream=pipe) as p:
        p.advance()
    assert pipe.getvalue() == ""
