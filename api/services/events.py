"""Client events: checked against their tickets, bounded by what was served, stored once.

The route (``POST /v1/events``) and the marketplace simulator both hand their events to
:class:`EventIntake`, which turns them into :class:`~api.ingest.EventRow` s for the event
writer. The rules, in the order they are checked (the first failure refuses the request
whole, with a 422 naming the event):

- the ticket is one this deployment issued (HMAC tag, canonical spelling);
- its experiment exists here;
- it was issued neither in the future (beyond ``CLOCK_SKEW_S`` of clock difference between
  replicas) nor longer ago than the experiment's attribution window, nor before
  ``tickets_valid_from`` (a ticket that had expired before the window was lengthened: its
  per-ticket counts may be purged already);
- ``exposure`` events only come from clients when the experiment counts client exposures.

What an accepted event may credit (``EventRow.reason``, ``EventRow.limit``):

- events on a ticket served while the experiment was not running, or arriving while it is
  paused or stopped, are stored and never credited (reason ``inactive``);
- events on a ticket of an earlier phase (served before an arm was promoted to reference)
  are stored and reported, not credited: the posteriors are relative to the new reference
  (``previous_phase``);
- events for an arm retired since the ticket was issued are stored, and reported by the
  next tick, but not credited: a retired arm's posterior is final (``arm_retired``);
- otherwise each ticket credits at most ``limit`` events of each type (the experiment's
  ``max_events_per_exposure``; one ticket is one exposure): the writer counts what each
  ticket has reported (``ticket_credits``) and marks the excess ``over_ticket_limit``.

See docs/security.md for why the limits are per ticket.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import NamedTuple, Protocol

from api.enums import ExperimentStatus, ExposureSource, Group
from api.errors import InvalidInput
from api.ingest import EventRow
from api.limits import ARM_RETIRED, CREDITED, INACTIVE, PREVIOUS_PHASE, event_limit
from api.serving import ExperimentSnapshot, ServingState
from api.tickets import TicketClaims, TicketSigner

# Replicas' clocks may differ by this much: a ticket "issued" this far ahead is accepted.
CLOCK_SKEW_S = 60


class ReportedEvent(Protocol):
    """What a client reports (``api.schemas.EventIn`` has these fields)."""

    @property
    def ticket(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def count(self) -> int: ...
    @property
    def event_id(self) -> str: ...


class _TicketCheck(NamedTuple):
    """What the events of one request share per distinct ticket (a tuple: one is built for
    almost every event, since every assignment has a ticket of its own)."""

    claims: TicketClaims
    snapshot: ExperimentSnapshot
    reason: str
    # The payload hash (what makes a retry a duplicate) is BLAKE2b-128 of the JSON text
    # ``["<ticket>","<type>",<count>]``. This is its start, ``["<ticket>"``, exactly as
    # json.dumps writes it: tickets are base64url, types match ^[a-z][a-z0-9_]*$ and counts
    # are ints, so the whole text is written by hand (tests/api/test_event_bounds.py checks
    # it against json.dumps).
    hash_prefix: str
    key: bytes  # TicketClaims.key, the per-ticket credit key


# EventRow(...) goes through a generated Python __new__; tuple.__new__ builds the same
# named tuple in C, a third of the cost, for every event of every request.
new_row = tuple.__new__


class EventIntake:
    """Turns reported events into rows for the writer, or refuses the batch (InvalidInput)."""

    def __init__(self, signer: TicketSigner, serving: ServingState) -> None:
        self.signer = signer
        self.serving = serving

    def rows(self, events: Sequence[ReportedEvent], *, now: float) -> list[EventRow]:
        checked: dict[str, _TicketCheck] = {}
        rows: list[EventRow] = []
        blake2b = hashlib.blake2b
        for index, event in enumerate(events):
            check = checked.get(event.ticket)
            if check is None:
                check = checked[event.ticket] = self._check_ticket(index, event.ticket, now)
            claims, snapshot = check.claims, check.snapshot
            kind = event.type
            if kind == "exposure" and snapshot.exposure_source == ExposureSource.SERVER:
                raise InvalidInput(
                    f"events[{index}].type: experiment {snapshot.name!r} counts exposures on "
                    "the server; expected a target event such as 'contact', not 'exposure'",
                    field=f"events[{index}].type",
                )
            text = f'{check.hash_prefix},"{kind}",{event.count}]'
            rows.append(
                new_row(
                    EventRow,
                    (
                        claims.experiment_id,
                        claims.arm_id,
                        claims.group,
                        kind,
                        event.count,
                        event.event_id,
                        blake2b(text.encode("utf-8"), digest_size=16).hexdigest(),
                        check.key,
                        event_limit(snapshot.event_limits, kind),
                        check.reason,
                        claims.bucket,
                        claims.segment,
                    ),
                )
            )
        return rows

    def _check_ticket(self, index: int, ticket: str, now: float) -> _TicketCheck:
        claims = self.signer.verify(ticket)
        if claims is None:
            field = _ticket_field(index)
            raise InvalidInput(
                f"{field}: expected a ticket issued by this server's assignment endpoint (this "
                "one is forged, corrupted, from another deployment or from an older version)",
                field=field,
            )
        snapshot = self.serving.get_by_id(claims.experiment_id)
        if snapshot is None:
            field = _ticket_field(index)
            raise InvalidInput(f"{field}: its experiment does not exist here", field=field)
        if claims.issued_at > now + CLOCK_SKEW_S:
            field = _ticket_field(index)
            raise InvalidInput(
                f"{field}: issued in the future ({claims.issued_at - now:.0f} s ahead of this "
                "server's clock); expected a ticket from an earlier assignment",
                field=field,
            )
        window = snapshot.attribution_window_s
        if now - claims.issued_at > window:
            field = _ticket_field(index)
            raise InvalidInput(
                f"{field}: expired; events count only within {window:g} s of the assignment "
                f"(experiment {snapshot.name!r}'s attribution window), and this ticket was "
                f"issued {now - claims.issued_at:.0f} s ago",
                field=field,
            )
        if claims.issued_at < snapshot.tickets_valid_from:
            field = _ticket_field(index)
            raise InvalidInput(
                f"{field}: expired; it was past experiment {snapshot.name!r}'s attribution "
                "window before the window was lengthened, and lengthening does not revive "
                "tickets; expected a ticket from a later assignment",
                field=field,
            )
        return _TicketCheck(
            claims,
            snapshot,
            _reason(claims, snapshot),
            # A verified ticket is base64url: nothing in it needs escaping in JSON.
            f'["{ticket}"',
            claims.key,
        )


def _ticket_field(index: int) -> str:
    """The field a refused ticket is named by (built only then: not for every ticket)."""
    return f"events[{index}].ticket"


# Looked up once: an enum member's lookup on its class (Group.INACTIVE) costs four times the
# comparison, for every ticket.
_INACTIVE_GROUP = Group.INACTIVE
_RUNNING = ExperimentStatus.RUNNING


def _reason(claims: TicketClaims, snapshot: ExperimentSnapshot) -> str:
    """Why events on this ticket will not be credited ("" when they may be)."""
    if claims.group == _INACTIVE_GROUP or snapshot.status != _RUNNING:
        return INACTIVE
    if claims.phase != snapshot.phase:
        return PREVIOUS_PHASE
    if claims.arm_id in snapshot.retired_arm_ids:
        return ARM_RETIRED
    return CREDITED
