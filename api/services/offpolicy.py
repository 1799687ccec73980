"""Counterfactual evaluation from an experiment's recorded windows (docs/offpolicy.md): the
tick records exported for a data scientist, and off-policy estimates of a candidate policy.

A window is an applied tick with recorded propensities (migration 0018) whose snapshot did
not change during it (an admin action or a genetic step could have served other
probabilities for part of it): each target exposure of it is a logged sample whose
propensity is its arm's.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from api import repositories as repo
from api.errors import BadRequest
from api.models import Tick, TickArm, reference_of
from api.services.common import require_experiment
from arms.origins import Origin
from bandit.errors import InvalidParameterError
from bandit.offpolicy import Window, doubly_robust, ips, snips, window_samples
from bandit.policies import make_policy

EXPORT_COLUMNS = (
    "tick",
    "created_at",
    "applied",
    "mode",
    "snapshot_changed",
    "group",
    "arm_id",
    "exposures",
    "target_events",
    "propensity",
    "draw_probability",
    "alpha_before",
    "beta_before",
    "alpha_after",
    "beta_after",
)


def tick_records(session: Session, name: str) -> list[dict[str, Any]]:
    """One row per tick and arm: the reference group's row (its arm, propensity 1) and one per
    target arm the tick recorded (applied ticks), oldest first."""
    experiment = require_experiment(session, name)
    reference_id = reference_of(repo.arms_of(session, experiment.id)).id
    ticks = session.scalars(
        select(Tick).where(Tick.experiment_id == experiment.id).order_by(Tick.number)
    ).all()
    arms_by_tick: dict[int, list[TickArm]] = defaultdict(list)
    for row in session.scalars(
        select(TickArm).where(TickArm.tick_id.in_([tick.id for tick in ticks]))
    ):
        arms_by_tick[row.tick_id].append(row)
    rows: list[dict[str, Any]] = []
    for tick in ticks:
        common = {
            "tick": tick.number,
            "created_at": tick.created_at.isoformat(),
            "applied": tick.applied,
            "mode": str(tick.mode),
            "snapshot_changed": tick.snapshot_changed,
        }
        rows.append(
            {
                **common,
                "group": "reference",
                "arm_id": reference_id,
                "exposures": tick.reference_exposures,
                "target_events": tick.reference_events,
                "propensity": 1.0,
                "draw_probability": None,
                "alpha_before": None,
                "beta_before": None,
                "alpha_after": None,
                "beta_after": None,
            }
        )
        for arm in sorted(arms_by_tick[tick.id], key=lambda row: row.arm_id):
            rows.append(
                {
                    **common,
                    "group": "target",
                    "arm_id": arm.arm_id,
                    "exposures": arm.exposures,
                    "target_events": arm.target_events,
                    "propensity": arm.propensity,
                    "draw_probability": arm.draw_probability,
                    "alpha_before": arm.alpha_before,
                    "beta_before": arm.beta_before,
                    "alpha_after": arm.alpha_after,
                    "beta_after": arm.beta_after,
                }
            )
    return rows


def export_ticks(session: Session, name: str, fmt: Literal["csv", "jsonl"]) -> str:
    """The tick records as CSV (empty cells for NULL) or JSON lines (null):
    ``pandas.read_csv(url)`` or ``pandas.read_json(url, lines=True)``."""
    rows = tick_records(session, name)
    if fmt == "jsonl":
        return "".join(json.dumps(row, separators=(",", ":")) + "\n" for row in rows)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=EXPORT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


@dataclass(frozen=True)
class Candidate:
    """The policy to evaluate: ``arm`` (always ``arm_id``), ``mix`` (``weights`` by arm id,
    normalised over the window's arms), ``uniform``, or ``policy`` (``policy`` with
    ``params``, replayed on each window's posteriors before its update)."""

    kind: Literal["arm", "mix", "uniform", "policy"]
    arm_id: int | None = None
    weights: dict[int, float] | None = None
    policy: str | None = None
    params: dict[str, float] | None = None


def _target(candidate: Candidate, arms: list[TickArm], prior: tuple[float, float]) -> np.ndarray:
    ids = [row.arm_id for row in arms]
    if candidate.kind == "uniform":
        return np.full(len(ids), 1.0 / len(ids))
    if candidate.kind == "arm":
        return np.array([1.0 if i == candidate.arm_id else 0.0 for i in ids])
    if candidate.kind == "mix":
        weights = candidate.weights or {}
        raw = np.array([weights.get(i, 0.0) for i in ids])
        return raw / raw.sum() if raw.sum() > 0 else raw
    policy = make_policy(
        candidate.policy or "thompson",
        prior_alpha=prior[0],
        prior_beta=prior[1],
        **(candidate.params or {}),
    )
    successes = np.maximum(np.array([row.alpha_before for row in arms]) - prior[0], 0.0)
    failures = np.maximum(np.array([row.beta_before for row in arms]) - prior[1], 0.0)
    return policy.probabilities(successes, failures)


def _validate(candidate: Candidate, arm_ids: set[int]) -> None:
    if candidate.kind == "arm" and candidate.arm_id not in arm_ids:
        raise BadRequest(
            f"candidate.arm_id must be one of the experiment's target arms {sorted(arm_ids)}; "
            f"got {candidate.arm_id!r}",
            field="candidate.arm_id",
        )
    if candidate.kind == "mix":
        weights = candidate.weights or {}
        values = list(weights.values())
        if not any(w > 0 for w in values) or any(w < 0 or not np.isfinite(w) for w in values):
            raise BadRequest(
                "candidate.weights must map arm ids to finite weights >= 0, one at least > 0",
                field="candidate.weights",
            )
        unknown = set(weights) - arm_ids
        if unknown:
            raise BadRequest(
                f"candidate.weights names arms that are not target arms: {sorted(unknown)}",
                field="candidate.weights",
            )


def evaluate(
    session: Session,
    name: str,
    candidate: Candidate,
    *,
    clip: float | None = None,
    level: float = 0.95,
) -> dict[str, Any]:
    """IPS, SNIPS and DR estimates of the candidate's target events per exposure over the
    usable windows, its lift over the reference group of the same windows, and what was
    left out."""
    experiment = require_experiment(session, name)
    if candidate.kind == "policy":
        # Validates the name and its parameters before any window is read.
        try:
            make_policy(candidate.policy or "", **(candidate.params or {}))
        except (InvalidParameterError, TypeError) as error:
            raise BadRequest(
                f"candidate.policy/params: {error}", field="candidate.policy"
            ) from None
    prior = (experiment.prior_alpha, experiment.prior_beta)
    ticks = session.scalars(
        select(Tick)
        .where(Tick.experiment_id == experiment.id, Tick.applied.is_(True))
        .order_by(Tick.number)
    ).all()
    rows: dict[int, list[TickArm]] = defaultdict(list)
    for row in session.scalars(
        select(TickArm).where(TickArm.tick_id.in_([tick.id for tick in ticks]))
    ):
        rows[row.tick_id].append(row)
    target_ids = {
        arm.id for arm in repo.arms_of(session, experiment.id) if arm.origin != Origin.REFERENCE
    }
    _validate(candidate, target_ids)
    windows: list[Window] = []
    ids: list[list[int]] = []
    targets: list[np.ndarray] = []
    reference_exposures = reference_events = 0.0
    skipped = {"without_propensities": 0, "snapshot_changed": 0}
    for tick in ticks:
        arms = sorted(rows[tick.id], key=lambda row: row.arm_id)
        if not arms or any(row.propensity is None for row in arms):
            skipped["without_propensities"] += 1
            continue
        if tick.snapshot_changed:
            skipped["snapshot_changed"] += 1
            continue
        arm_ids = [row.arm_id for row in arms]
        exposures = [row.exposures for row in arms]
        events = [row.target_events for row in arms]
        served = [float(row.propensity or 0.0) for row in arms]
        target = _target(candidate, arms, prior)
        if candidate.kind == "arm" and candidate.arm_id not in arm_ids:
            # The candidate's arm did not exist in this window (added later, or retired):
            # all of its probability is on an arm the window never served.
            arm_ids.append(int(candidate.arm_id or 0))
            exposures.append(0.0)
            events.append(0.0)
            served.append(0.0)
            target = np.append(target, 1.0)
        windows.append(Window(np.array(exposures), np.array(events), np.array(served)))
        ids.append(arm_ids)
        targets.append(target)
        reference_exposures += tick.reference_exposures
        reference_events += tick.reference_events
    reference_rate = reference_events / reference_exposures if reference_exposures else None
    result: dict[str, Any] = {
        "experiment": name,
        "candidate": asdict(candidate),
        "windows": len(windows),
        "windows_skipped": skipped,
        "exposures_left_out": 0.0,
        "reference": {"exposures": reference_exposures, "rate": reference_rate},
        "estimates": [],
        "policy": experiment.policy,
    }
    if not windows:
        # Nothing to estimate from yet (no applied window since migration 0018).
        return result
    log = window_samples(windows, targets)
    predicted, expected = _model_terms(windows, ids, targets)
    estimates = [
        ips(log.samples, clip=clip, level=level, unsupported=log.unsupported),
        snips(log.samples, clip=clip, level=level, unsupported=log.unsupported),
        doubly_robust(
            log.samples, predicted, expected, clip=clip, level=level, unsupported=log.unsupported
        ),
    ]
    result["exposures_left_out"] = log.left_out
    result["estimates"] = [
        {
            **_finite(asdict(e)),
            "lift": _lift(e.value, e.standard_error, reference_rate, reference_exposures, level),
        }
        for e in estimates
    ]
    return result


def _pooled_rates(windows: list[Window], ids: list[list[int]]) -> dict[int, float]:
    exposures: dict[int, float] = defaultdict(float)
    events: dict[int, float] = defaultdict(float)
    for window, arm_ids in zip(windows, ids, strict=True):
        for k, arm_id in enumerate(arm_ids):
            exposures[arm_id] += float(window.exposures[k])
            events[arm_id] += float(window.events[k])
    return {i: events[i] / exposures[i] if exposures[i] > 0 else 0.0 for i in exposures}


def _model_terms(
    windows: list[Window], ids: list[list[int]], targets: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """DR's reward model, each arm's pooled rate over the usable windows: per sample row (in
    window_samples' order) its rate for the logged arm and its mean under the candidate."""
    rates = _pooled_rates(windows, ids)
    predicted: list[float] = []
    expected: list[float] = []
    for window, arm_ids, target in zip(windows, ids, targets, strict=True):
        window_rates = np.array([rates[i] for i in arm_ids])
        mean = float(target @ window_rates)
        for k in np.flatnonzero((window.exposures > 0) & (window.propensities > 0)):
            n, events = window.exposures[k], window.events[k]
            repeats = 1 if events > n else int(events > 0) + int(n - events > 0)
            predicted.extend([float(window_rates[k])] * repeats)
            expected.extend([mean] * repeats)
    return np.array(predicted), np.array(expected)


def _finite(values: dict[str, Any]) -> dict[str, Any]:
    """Undefined figures as None, not nan or infinity (SNIPS without any positive weight, a
    standard error from a single sample): JSON has no such numbers."""
    return {
        key: None if isinstance(value, float) and not np.isfinite(value) else value
        for key, value in values.items()
    }


def _lift(
    value: float, error: float, reference: float | None, exposures: float, level: float
) -> dict[str, float] | None:
    """value / reference - 1, its interval by the delta method (the reference rate binomial)."""
    if not reference or not (np.isfinite(value) and np.isfinite(error)):
        return None
    from scipy import stats

    reference_error = float(np.sqrt(reference * max(1 - reference, 0.0) / exposures))
    ratio = value / reference
    ratio_error = float(
        np.sqrt((error / reference) ** 2 + (value * reference_error / reference**2) ** 2)
    )
    z = float(stats.norm.ppf(0.5 + level / 2))
    return {
        "value": ratio - 1,
        "low": ratio - 1 - z * ratio_error,
        "high": ratio - 1 + z * ratio_error,
    }


def describe(result: dict[str, Any]) -> str:
    """The evaluation as a few lines of text (ranktune evaluate experiment)."""
    reference = result["reference"]
    rate = reference["rate"]
    lines = [
        f"{result['experiment']}: candidate {result['candidate']['kind']} "
        f"over {result['windows']} windows (logging policy {result['policy']}; skipped "
        + ", ".join(f"{k} {v}" for k, v in result["windows_skipped"].items())
        + f"; exposures left out {result['exposures_left_out']:g})",
        "reference group, same windows: "
        + (f"{rate:.5f} per exposure" if rate is not None else "no exposure")
        + f" ({reference['exposures']:g} exposures)",
    ]
    for e in result["estimates"]:
        lift = e["lift"]
        lift_text = (
            f"  lift {lift['value']:+.1%} [{lift['low']:+.1%}, {lift['high']:+.1%}]" if lift else ""
        )
        lines.append(
            f"{e['estimator']:>5}: {_number(e['value'])} {e['level']:.0%} CI "
            f"[{_number(e['low'])}, {_number(e['high'])}]  "
            f"ESS {e['effective_sample_size']:.0f} of {e['samples']:g}" + lift_text
        )
    notes = {note for e in result["estimates"] for note in e["warnings"]}
    lines.extend(f"warning: {note}" for note in sorted(notes))
    return "\n".join(lines) + "\n"


def _number(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.5f}"
