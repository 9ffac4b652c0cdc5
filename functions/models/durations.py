"""Go duration strings (`1h30m`, `90s`, `500ms`) and the one rule that maps them to cron schedules.

The kopf bridge and the local scheduler both call `to_schedule`, so a CR gets the same cadence
in a cluster and on a laptop.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_go_duration(text: str) -> float:
    """Seconds in a Go duration string; ValueError with the reason when it is not one."""
    s = text.strip()
    if not s:
        raise ValueError("empty duration")
    sign = -1.0 if s.startswith("-") else 1.0
    s = s.lstrip("+-")
    if s == "0":
        return 0.0
    pos, total = 0, 0.0
    while pos < len(s):
        m = _PART.match(s, pos)
        if not m:
            raise ValueError(f"invalid Go duration {text!r}: expected <number><unit> with unit ns, us, ms, s, m or h")
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    return sign * total


def format_go_duration(seconds: float) -> str:
    """The canonical Go form (`1h0m0s`, `1m30s`, `500ms`)."""
    if seconds == 0:
        return "0s"
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    h, rem = divmod(int(seconds), 3600)
    m, s = divmod(rem, 60)
    frac = seconds - int(seconds)
    sec = f"{s + frac:g}s"
    if h:
        return f"{h}h{m}m{sec}"
    if m:
        return f"{m}m{sec}"
    return sec


@dataclass(frozen=True)
class Schedule:
    """A PingSource schedule derived from an interval, and what was chosen when cron cannot say it."""

    cron: str
    seconds: int
    note: str = ""


def to_schedule(interval_seconds: float) -> Schedule:
    """Map an interval to a cron schedule (UTC).

    Rules: below one minute (including 0, which Krateo turns into a busy loop) rises to every minute;
    whole minutes that divide an hour -> `*/m * * * *`; whole hours that divide a day -> `0 */h * * *`;
    whole days -> `0 0 */d * *`; anything else is rounded down to the nearest expressible
    cadence, and the note says so (the bridge writes it into the CR status).
    """
    secs = int(interval_seconds)
    if secs < 60:
        return Schedule("* * * * *", 60, f"interval {format_go_duration(interval_seconds)} is below the one-minute cron floor; running every minute")
    minutes = secs // 60
    note = "" if secs % 60 == 0 else f"seconds dropped: cron runs every {minutes}m"
    if minutes < 60:
        m = max(d for d in (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30) if d <= minutes)
        if m != minutes:
            note = f"interval {format_go_duration(secs)} does not divide an hour; running every {m}m"
        return Schedule("* * * * *" if m == 1 else f"*/{m} * * * *", m * 60, note)
    hours = minutes // 60
    if minutes % 60:
        note = f"interval {format_go_duration(secs)} is not whole hours; running every {hours}h"
    if hours < 24:
        h = max(d for d in (1, 2, 3, 4, 6, 8, 12) if d <= hours)
        if h != hours:
            note = f"interval {format_go_duration(secs)} does not divide a day; running every {h}h"
        return Schedule("0 * * * *" if h == 1 else f"0 */{h} * * *", h * 3600, note)
    days = hours // 24
    if hours % 24:
        note = f"interval {format_go_duration(secs)} is not whole days; running every {days}d"
    return Schedule("0 0 * * *" if days == 1 else f"0 0 */{days} * *", days * 86400, note)
