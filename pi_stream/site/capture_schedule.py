"""site.yml `capture:`: how the capture supervisor starts sources and treats those that fail.

Named capture_schedule, not capture: pi_stream.capture is what the supervisor
runs (the ffmpeg argv per camera), rendered partly from this schedule. The file
says minutes for the re-probe; the model holds seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

from pi_stream.site.fields import Fields


@dataclass(frozen=True)
class CaptureSchedule:
    """How the capture supervisor treats sources that fail: exponential backoff with jitter, then a rare re-probe."""

    stagger_seconds: int
    retry_first_seconds: int
    retry_max_seconds: int
    disable_after_failures: int
    reprobe_seconds: int
    stall_seconds: int
    on_demand_idle_seconds: int


def parse_capture(section: Fields) -> CaptureSchedule:
    schedule = CaptureSchedule(
        stagger_seconds=section.integer("stagger_seconds", 2, 0, 60),
        retry_first_seconds=section.integer("retry_first_seconds", 5, 1, 600),
        retry_max_seconds=section.integer("retry_max_seconds", 300, 1, 86400),
        disable_after_failures=section.integer("disable_after_failures", 10, 1, 1000),
        reprobe_seconds=section.integer("reprobe_minutes", 30, 1, 1440) * 60,
        stall_seconds=section.integer("stall_seconds", 20, 5, 600),
        on_demand_idle_seconds=section.integer("on_demand_idle_seconds", 60, 10, 3600),
    )
    if schedule.retry_max_seconds < schedule.retry_first_seconds:
        section.error("retry_max_seconds", "must be at least retry_first_seconds")
    section.done()
    return schedule
