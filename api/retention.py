"""How long stored rows must outlive the retries that could still refer to them.

An event's id makes a retry idempotent only while the stored event is still there: a retry
that arrives after its original was pruned would be stored and counted again. A retry is
accepted only while its ticket is valid (``api.services.events``): at most the experiment's
attribution window after the ticket's issue, and a ticket may have been issued up to
``CLOCK_SKEW_S`` (60 s) ahead of the clock of the replica that stored the original. The
replica that prunes may be as far off again, and an accepted event waits in the writer's
queue before its id is looked up. So an event id must be kept for the longest attribution
window plus :data:`RETRY_MARGIN_S` (an hour: two clock skews and 58 minutes of queue, far
beyond any the writer has shown), and experiments may have attribution windows of at most
the retention window minus that margin (:func:`longest_attribution_window_s`).

The pruning job (``api.services.retention``) does not trust the setting alone: it keeps rows
for the longest window of any stored experiment plus the margin when that is longer, so an
experiment created by a replica configured with a longer retention (or before this rule)
never loses the rows its retries need.

Nothing here touches storage: settings and services share these numbers.
"""

from __future__ import annotations

DAY_S = 86_400.0
# Two replicas' clock differences (api.services.events.CLOCK_SKEW_S, twice: the ticket's
# issuer and the pruner) and the time an accepted event may wait for the writer.
RETRY_MARGIN_S = 3_600.0
# The attribution window of an experiment created without one (api.schemas); the retention
# window must admit it.
DEFAULT_ATTRIBUTION_WINDOW_S = 14_400.0
MIN_RETENTION_DAYS = (DEFAULT_ATTRIBUTION_WINDOW_S + RETRY_MARGIN_S) / DAY_S  # 5 hours


def longest_attribution_window_s(retention_days: float) -> float:
    """The longest attribution window an experiment may have under this retention."""
    return retention_days * DAY_S - RETRY_MARGIN_S


def keep_s(retention_days: float, longest_window_s: float | None) -> float:
    """How many seconds stored events are kept: the retention window, or the longest stored
    attribution window plus the margin if that is longer."""
    needed = 0.0 if longest_window_s is None else longest_window_s + RETRY_MARGIN_S
    return max(retention_days * DAY_S, needed)


def retention_shortfall(retention_days: float) -> str | None:
    """Why ``retention_days`` is too short (None when it is long enough)."""
    if retention_days >= MIN_RETENTION_DAYS:
        return None
    return (
        f"{retention_days:g} days; expected at least {MIN_RETENTION_DAYS:g} days (5 hours): "
        "event ids must be kept as long as a retry can still be accepted, which is the "
        f"attribution window ({DEFAULT_ATTRIBUTION_WINDOW_S:g} s by default) plus "
        f"{RETRY_MARGIN_S:g} s for clock differences and queueing; a shorter window would "
        "count a late retry twice"
    )
