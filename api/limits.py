"""What one ticket may credit: the per-event-type limits, and why counts go uncredited.

One ticket is one exposure (one configuration served), so a limit on the events credited
per ticket is also a limit on events per exposure; the tick applies the same limits to
each arm's totals (``api.services.ticks``). docs/security.md explains the design.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Event type (or "*" for any other type) -> the most events of that type credited per
# ticket. 1 keeps the Beta model's reading (did an exposure lead to a contact, or not);
# an experiment whose blocks legitimately yield several events per exposure raises it with
# ``max_events_per_exposure``. Client-reported exposures: one per ticket.
DEFAULT_EVENT_LIMITS: dict[str, int] = {"*": 1, "exposure": 1}
MAX_EVENT_LIMIT = 1_000_000

# Why a count is stored but not credited (``pending_batches.kinds``, ``ticks.uncredited``).
CREDITED = ""
INACTIVE = "inactive"  # served or reported while the experiment was not running
ARM_RETIRED = "arm_retired"  # reported after the arm was retired: its posterior is final
OVER_TICKET_LIMIT = "over_ticket_limit"  # beyond what one ticket may credit
OVER_EXPOSURE_LIMIT = "over_exposure_limit"  # beyond the arm's exposures times the limit
# Reported on a ticket of an earlier phase (before a promotion): relative to another reference.
PREVIOUS_PHASE = "previous_phase"


def event_limits(configured: Mapping[str, Any] | None) -> dict[str, int]:
    """The defaults overlaid with an experiment's ``max_events_per_exposure``."""
    overrides = {key: int(value) for key, value in (configured or {}).items()}
    return {**DEFAULT_EVENT_LIMITS, **overrides}


def event_limit(limits: Mapping[str, int], event_type: str) -> int:
    return limits.get(event_type, limits["*"])
