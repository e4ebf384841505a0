"""Progress lines with ETAs: one line per update in logs, nothing for quick sub-phases, and the time summary."""

import io
import time

from splavu_ray.progress import Progress, eta, time_summary


def test_a_log_gets_whole_lines_with_counts_rate_and_eta():
    log = io.StringIO()  # not a terminal: one plain line per refresh, never a carriage return
    with Progress(4, "features", unit="row", stream=log, min_interval=0) as bar:
        for _ in range(4):
            time.sleep(0.01)
            bar.update(1, rejected=0)
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and len(lines) >= 2
    assert lines[-1].startswith("[features]: 100%") and "4/4" in lines[-1] and "row/s" in lines[-1]
    assert "rejected=0" in lines[-1]
    assert "<" in lines[1]  # elapsed<remaining: the ETA


def test_a_log_is_not_flooded_and_quick_sub_phases_stay_silent():
    log = io.StringIO()
    with Progress(1000, "sweep", stream=log) as bar:  # default: at most one line per 10 s, plus the last
        for _ in range(1000):
            bar.update(1)
    assert len(log.getvalue().splitlines()) <= 3
    quiet = io.StringIO()
    with Progress(100, "attacker", stream=quiet, delay=5.0) as bar:
        for _ in range(100):
            bar.update(1)
    assert quiet.getvalue() == ""


def test_eta_and_summary():
    assert eta(2, 10, 20.0) == "01:20" and eta(0, 10, 5.0) == "?" and eta(10, 10, 5.0) == "0:00"
    line = time_summary({"features": 4.26, "training": 130.0}, {"privacy": 9.3}, 140.0)
    assert line == "[splavu] time: 140.0 s = features 4.3 s + training 130.0 s (privacy 9.3 s)"
