"""Progress with ETAs for every long phase, readable in a terminal and in a log.

``Progress`` is tqdm underneath. In a terminal it is tqdm's live bar; when the stream is not a terminal
(CI, ``ray job logs``, a redirected file) each update becomes ONE plain line, at most every
``min_interval`` seconds (10 s by default) plus the last one, so logs stay readable::

    [features]:  40%|####      | 871/2176 [01:10<01:45, 12.4row/s, rejected=0]

``time_summary`` prints where a run's wall time went.
"""

from __future__ import annotations

import sys
from typing import IO, Any

from tqdm import tqdm


class _Lines:
    """A file for tqdm that turns its carriage-return refreshes into newline-terminated lines."""

    def __init__(self, stream: IO[str]):
        self.stream = stream

    def write(self, s: str) -> None:
        s = s.replace("\r", "").rstrip("\n")
        if s.strip():
            self.stream.write(s + "\n")

    def flush(self) -> None:
        self.stream.flush()


def is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Progress:
    """``with Progress(total, "features", unit="row") as p: ... p.update(n, rejected=k)``."""

    def __init__(self, total: int | None, desc: str, unit: str = "it", stream: IO[str] | None = None,
                 min_interval: float | None = None, enabled: bool = True, delay: float = 0.0):
        """``delay``: show nothing unless the work is still running after that many seconds (for the many
        short sub-phases, such as one attacker's epochs, that only matter when the data is large)."""
        stream = stream or sys.stderr
        tty = is_terminal(stream)
        self._bar = tqdm(total=total, desc=f"[{desc}]", unit=unit, disable=not enabled, dynamic_ncols=tty,
                         file=stream if tty else _Lines(stream), ascii=not tty,
                         mininterval=min_interval if min_interval is not None else (0.1 if tty else 10.0),
                         maxinterval=1e9 if not tty else 10.0, smoothing=0.1, delay=delay)

    def update(self, n: int = 1, **postfix: Any) -> None:
        if postfix:
            self._bar.set_postfix(postfix, refresh=False)
        self._bar.update(n)

    def close(self) -> None:
        self._bar.close()

    @property
    def elapsed(self) -> float:
        return self._bar.format_dict["elapsed"]

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def eta(done: int, total: int, elapsed_s: float) -> str:
    """'mm:ss' (or 'h:mm:ss') left at the mean rate so far; '?' before the first unit is done."""
    if done <= 0 or total <= done:
        return "0:00" if total <= done else "?"
    return tqdm.format_interval(elapsed_s / done * (total - done))


def time_summary(phases: dict[str, float], detail: dict[str, float] | None = None, total: float | None = None) -> str:
    """One line: where the wall time went, e.g. 'time: 171.7 s = features 4.3 s + training 129.7 s + ...'."""
    total = total if total is not None else sum(phases.values())
    parts = " + ".join(f"{k} {v:.1f} s" for k, v in phases.items())
    line = f"[splavu] time: {total:.1f} s = {parts}"
    if detail:
        line += " (" + ", ".join(f"{k} {v:.1f} s" for k, v in detail.items()) + ")"
    return line
