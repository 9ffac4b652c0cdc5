"""Cron schedules, pure: the five-field matcher the local scheduler fires by, and the rule that turns a
CR's `schedule` (Krateo's InferenceRun) into what a Knative PingSource takes.

Knative's PingSource validates `spec.schedule` with robfig/cron's `ParseStandard`
(knative/eventing pkg/apis/sources/v1/ping_validation.go): the five standard fields (minute, hour,
day of month, month, day of week) or a descriptor. Krateo's InferenceRun pattern
(krateoplatformops/kserve-controller api/v1/inferencerun_types.go) lets through 5 to 7 fields and
`@annually|@yearly|@monthly|@weekly|@daily|@midnight|@hourly`; `pingsource_cron` maps them:

- five fields: kept verbatim (checked first: numbers, `*`, ranges, steps, lists; names are not supported);
- a descriptor: written as the five fields robfig/cron gives it (`@hourly` = `0 * * * *`, `@daily` and
  `@midnight` = `0 0 * * *`, `@weekly` = `0 0 * * 0`, `@monthly` = `0 0 1 * *`, `@yearly` and
  `@annually` = `0 0 1 1 *`), so the PingSource fires at the same minutes and the local scheduler,
  which reads five fields only, can fire it too; the note says so;
- six or seven fields (seconds, years) are refused (`ScheduleRefused`, the reason in its message):
  PingSource takes five, and a Kubernetes CronJob (what Krateo's controller makes of a schedule)
  refuses them the same way, so such a run never ran on a schedule in Krateo either.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
FIELDS = ("minute", "hour", "day of month", "month", "day of week")
DESCRIPTORS: dict[str, str] = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}
"""robfig/cron's descriptors (what Knative's PingSource reads them as), as five-field crons."""


def parse_field(text: str, low: int, high: int) -> frozenset[int]:
    """One cron field -> the set of values it allows; ValueError naming the bad part."""
    values: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if base == "*":
                start, end = low, high
            elif "-" in base:
                a, b = base.split("-", 1)
                start, end = int(a), int(b)
            else:
                start = int(base)
                end = high if step_text else start
        except ValueError:
            raise ValueError(f"cron field {text!r}: {part!r} is not a number, '*', a range or a step "
                             "(names such as MON or JAN are not supported)") from None
        if step < 1 or not (low <= start <= end <= high):
            raise ValueError(f"cron field {text!r}: {part!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


class Cron:
    """A parsed five-field cron expression. Day of month and day of week combine with OR when both are
    restricted, as in cron(8)."""

    def __init__(self, expr: str) -> None:
        fields = expr.split()
        if len(fields) != 5:
            raise ValueError(f"cron expression {expr!r} must have 5 fields")
        try:
            self.minute, self.hour, self.dom, self.month, dow = (
                parse_field(f, lo, hi) for f, (lo, hi) in zip(fields, RANGES, strict=True))
        except ValueError as exc:
            raise ValueError(f"invalid cron expression {expr!r}: {exc}") from exc
        self.dow = frozenset(d % 7 for d in dow)
        self.dom_any, self.dow_any = fields[2] == "*", fields[4] == "*"
        self.expr = expr

    def matches(self, t: datetime) -> bool:
        if t.minute not in self.minute or t.hour not in self.hour or t.month not in self.month:
            return False
        dom_ok, dow_ok = t.day in self.dom, (t.isoweekday() % 7) in self.dow
        if self.dom_any or self.dow_any:
            return dom_ok and dow_ok
        return dom_ok or dow_ok


class ScheduleRefused(ValueError):
    """A schedule no PingSource can take; `loc` is the CR field, the message says why."""

    def __init__(self, message: str, loc: str = "spec.schedule") -> None:
        super().__init__(message)
        self.loc = loc


@dataclass(frozen=True)
class PingCron:
    """The five-field cron a PingSource gets for a CR's schedule, and what was done to get it."""

    cron: str
    original: str
    note: str = ""


def pingsource_cron(schedule: str, loc: str = "spec.schedule") -> PingCron:
    """A CR's schedule as a PingSource cron (see the module docstring); ScheduleRefused saying why not."""
    text = schedule.strip()
    shown = repr(text) if len(text) <= 60 else f"{text[:60]!r}… ({len(text)} characters)"
    if text in DESCRIPTORS:
        cron = DESCRIPTORS[text]
        return PingCron(cron, text, f"{text} is {cron!r} (as Knative PingSource reads it), written as that 5-field cron")
    if text.startswith("@"):
        raise ScheduleRefused(f"{shown} is not a supported descriptor: use {', '.join(DESCRIPTORS)} or 5 cron fields", loc)
    fields = text.split()
    if fields and "=" in fields[0]:
        raise ScheduleRefused(f"{shown}: a time zone prefix is not supported, schedules run in UTC", loc)
    if len(fields) in (6, 7):
        extra = "seconds" if len(fields) == 6 else "seconds and years"
        raise ScheduleRefused(
            f"{shown} has {len(fields)} fields ({extra}): Knative PingSource takes the 5 standard cron fields "
            f"({' '.join(FIELDS)}) or {', '.join(DESCRIPTORS)} (a Kubernetes CronJob refuses 6 and 7 fields too)", loc)
    if len(fields) != 5:
        raise ScheduleRefused(f"{shown} is not a cron schedule: expected 5 fields ({', '.join(FIELDS)}) or "
                              f"{', '.join(DESCRIPTORS)}", loc)
    try:
        Cron(text)
    except ValueError as exc:
        raise ScheduleRefused(str(exc), loc) from None
    return PingCron(text, text)
