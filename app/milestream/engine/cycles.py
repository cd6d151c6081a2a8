"""Where a moment falls among a milestone's cycles.

Pure calendar arithmetic in the milestone's timezone. Calendar boundaries are
local midnights (a month is a calendar month when the cycles start on the 1st);
rolling cycles are measured from an anchor instant (the customer's first
activity), a daily one being exactly 24 hours.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from ..schemas.definitions import (
    CalendarCycles,
    CustomCycles,
    Frequency,
    MilestoneDefinition,
    RollingCycles,
)

_MONTHS = {
    Frequency.MONTHLY: 1,
    Frequency.QUARTERLY: 3,
    Frequency.HALF_YEARLY: 6,
    Frequency.YEARLY: 12,
}
_DAYS = {Frequency.DAILY: 1, Frequency.WEEKLY: 7}


@dataclass(frozen=True, slots=True)
class Window:
    """One cycle: ``start`` inclusive, ``end`` exclusive (``None``: open-ended)."""

    index: int  # 1-based
    name: str
    start: datetime
    end: datetime | None

    def contains(self, moment: datetime) -> bool:
        return self.start <= moment and (self.end is None or moment < self.end)


def add_months(day: date, months: int, anchor_day: int) -> date:
    """``day`` moved by ``months``, on ``anchor_day`` clamped to the month's length."""
    month0 = day.month - 1 + months
    year = day.year + month0 // 12
    month = month0 % 12 + 1
    return date(year, month, min(anchor_day, calendar.monthrange(year, month)[1]))


def _local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time.min, zone).astimezone(timezone.utc)


def _calendar_bounds(start: date, frequency: Frequency, index0: int) -> tuple[date, date]:
    if frequency in _DAYS:
        step = _DAYS[frequency]
        first = start + timedelta(days=step * index0)
        return first, first + timedelta(days=step)
    step = _MONTHS[frequency]
    return (
        add_months(start, step * index0, start.day),
        add_months(start, step * (index0 + 1), start.day),
    )


def _calendar_index0(start: date, frequency: Frequency, day: date) -> int:
    if frequency in _DAYS:
        return (day - start).days // _DAYS[frequency]
    months = (day.year - start.year) * 12 + (day.month - start.month)
    if day < add_months(start, months, start.day):
        months -= 1
    return months // _MONTHS[frequency]


def period_name(definition: MilestoneDefinition, index: int) -> str:
    cycles = definition.cycles
    if isinstance(cycles, CustomCycles) and cycles.periods[index - 1].name:
        return cycles.periods[index - 1].name  # type: ignore[return-value]
    return f"{definition.name} #{index}"


def calendar_window(definition: MilestoneDefinition, index: int) -> Window:
    """The ``index``-th (1-based) cycle of a calendar or custom milestone."""
    cycles = definition.cycles
    zone = definition.zone
    if isinstance(cycles, CalendarCycles):
        first, after = _calendar_bounds(cycles.start_date, cycles.frequency, index - 1)
    elif isinstance(cycles, CustomCycles):
        period = cycles.periods[index - 1]
        first, after = period.start, period.end + timedelta(days=1)
    else:  # pragma: no cover - callers dispatch on the cycle kind
        raise TypeError(f"{cycles.kind} cycles are not calendar-based")
    return Window(index, period_name(definition, index), _local_midnight(first, zone), _local_midnight(after, zone))


def fixed_window_at(definition: MilestoneDefinition, moment: datetime) -> Window | None:
    """The calendar or custom cycle containing ``moment``, if any."""
    cycles = definition.cycles
    local_day = moment.astimezone(definition.zone).date()
    if isinstance(cycles, CalendarCycles):
        index0 = _calendar_index0(cycles.start_date, cycles.frequency, local_day)
        if not 0 <= index0 < cycles.count:
            return None
        return calendar_window(definition, index0 + 1)
    if isinstance(cycles, CustomCycles):
        for i, period in enumerate(cycles.periods, start=1):
            if period.start <= local_day <= period.end:
                return calendar_window(definition, i)
        return None
    raise TypeError(f"{cycles.kind} cycles depend on the customer")


def rolling_window(definition: MilestoneDefinition, anchor: datetime, index: int) -> Window:
    """The ``index``-th cycle of a rolling milestone anchored at ``anchor``."""
    cycles = definition.cycles
    assert isinstance(cycles, RollingCycles)
    if cycles.frequency in _DAYS:
        length = timedelta(days=_DAYS[cycles.frequency])
        start, end = anchor + length * (index - 1), anchor + length * index
    else:
        local = anchor.astimezone(definition.zone)
        step = _MONTHS[cycles.frequency]

        def shifted(n: int) -> datetime:
            d = add_months(local.date(), step * n, local.day)
            return datetime.combine(d, local.timetz()).astimezone(timezone.utc)

        start, end = shifted(index - 1), shifted(index)
    return Window(index, period_name(definition, index), start, end)


def rolling_window_at(definition: MilestoneDefinition, anchor: datetime, moment: datetime) -> Window | None:
    cycles = definition.cycles
    assert isinstance(cycles, RollingCycles)
    if moment < anchor:
        return None
    if cycles.frequency in _DAYS:
        index = int((moment - anchor) // timedelta(days=_DAYS[cycles.frequency])) + 1
    else:
        local_anchor = anchor.astimezone(definition.zone)
        local = moment.astimezone(definition.zone)
        months = (local.year - local_anchor.year) * 12 + (local.month - local_anchor.month)
        index = months // _MONTHS[cycles.frequency] + 1
        window = rolling_window(definition, anchor, index)
        if moment < window.start:
            index -= 1
    if index > cycles.count:
        return None
    return rolling_window(definition, anchor, index)


def next_window(definition: MilestoneDefinition, window: Window, anchor: datetime | None) -> Window | None:
    """The cycle after ``window`` (calendar, custom or rolling), if the milestone has one."""
    cycles = definition.cycles
    index = window.index + 1
    if isinstance(cycles, RollingCycles):
        if anchor is None or index > cycles.count:
            return None
        following = rolling_window(definition, anchor, index)
    elif isinstance(cycles, (CalendarCycles, CustomCycles)):
        count = cycles.count if isinstance(cycles, CalendarCycles) else len(cycles.periods)
        if index > count:
            return None
        following = calendar_window(definition, index)
    else:
        return None
    return following if following.start < definition.ends_at else None


def fixed_window_from(definition: MilestoneDefinition, moment: datetime) -> Window | None:
    """The calendar or custom cycle running at ``moment``, else the next one to start."""
    window = fixed_window_at(definition, moment)
    if window is not None:
        return window
    cycles = definition.cycles
    count = cycles.count if isinstance(cycles, CalendarCycles) else len(cycles.periods)  # type: ignore[union-attr]
    for index in range(1, count + 1):
        candidate = calendar_window(definition, index)
        if candidate.start > moment:
            return candidate if candidate.start < definition.ends_at else None
    return None


def named_window(definition: MilestoneDefinition, name: str) -> Window | None:
    """The calendar or custom cycle called ``name`` (as outputs name it, or ``#<n>``), if there is one."""
    cycles = definition.cycles
    if isinstance(cycles, CalendarCycles):
        count = cycles.count
    elif isinstance(cycles, CustomCycles):
        count = len(cycles.periods)
    else:
        return None  # rolling and till-achieved cycles start per customer: they have no names to enrol into
    if name.startswith("#") and name[1:].isdigit() and 1 <= int(name[1:]) <= count:
        return calendar_window(definition, int(name[1:]))
    for index in range(1, count + 1):
        if period_name(definition, index) == name:
            return calendar_window(definition, index)
    return None
