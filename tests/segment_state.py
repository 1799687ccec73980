"""The packed per-segment state (``arm_segment_states``, ``tick_segment_windows``) as one
row per (arm, segment) and per (tick, segment, arm), for tests that set or check pairs."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from api import repositories as repo
from api.models import ArmSegmentState, TickSegmentWindow


class Pair(NamedTuple):
    """One arm's state in one segment."""

    arm_id: int
    segment: int
    alpha: float
    beta: float
    exposures: float
    target_events: float


class Recorded(NamedTuple):
    """One (segment, arm) pair of an applied tick's record."""

    tick_id: int
    segment: int
    arm_id: int
    exposures: float
    target_events: float
    alpha_increment: float
    beta_increment: float
    alpha_after: float
    beta_after: float


def stored_pairs(session: Session) -> list[Pair]:
    """Every stored (arm, segment) with credited exposures or events."""
    arm_ids = list(session.scalars(select(ArmSegmentState.arm_id)).all())
    pairs = []
    for arm_id, state in repo.arm_segment_states(session, arm_ids).items():
        for s in np.flatnonzero((state.exposures > 0) | (state.target_events > 0)).tolist():
            pairs.append(
                Pair(
                    arm_id,
                    s,
                    float(state.alphas[s]),
                    float(state.betas[s]),
                    float(state.exposures[s]),
                    float(state.target_events[s]),
                )
            )
    return pairs


def set_pairs(
    session: Session, pairs: Iterable[Pair], prior: tuple[float, float] = (1.0, 1.0)
) -> None:
    """Store these (arm, segment) states, the arms' other segments kept (new ones hold
    ``prior`` and no counts)."""
    pairs = list(pairs)
    arm_ids = sorted({pair.arm_id for pair in pairs})
    states = repo.arm_segment_states(session, arm_ids)
    written = {}
    for arm_id in arm_ids:
        mine = [pair for pair in pairs if pair.arm_id == arm_id]
        old = states.get(arm_id)
        size = max([old.alphas.size if old else 0, *(pair.segment + 1 for pair in mine)])
        # The four values of a pair, quarantined events, ratio moments (set: the exposures,
        # a dispersion factor of 1).
        state = np.zeros((6, size))
        state[0], state[1] = prior
        if old is not None:
            n = old.alphas.size
            state[:, :n] = [
                old.alphas,
                old.betas,
                old.exposures,
                old.target_events,
                old.quarantined_events,
                old.ratio_moments,
            ]
        for pair in mine:
            state[:4, pair.segment] = pair[2:]
            state[5, pair.segment] = pair.exposures
        written[arm_id] = repo.ArmSegmentArrays(*state)
    repo.write_arm_segment_states(session, written)


def recorded_pairs(session: Session, tick_ids: Sequence[int] | None = None) -> list[Recorded]:
    """The (segment, arm) records of these ticks (default: every tick with a record)."""
    if tick_ids is None:
        tick_ids = list(session.scalars(select(TickSegmentWindow.tick_id)).all())
    rows = []
    for tick_id, records in repo.tick_segment_records(session, tick_ids).items():
        columns = [
            records.segments.tolist(),
            records.arm_ids.tolist(),
            records.exposures.tolist(),
            records.target_events.tolist(),
            records.alpha_increments.tolist(),
            records.beta_increments.tolist(),
            records.alphas_after.tolist(),
            records.betas_after.tolist(),
        ]
        rows.extend(Recorded(tick_id, *values) for values in zip(*columns, strict=True))
    return rows
