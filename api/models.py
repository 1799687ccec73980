"""ORM models: the storage side of experiments, arms, events, ticks and the audit log.

Domain values (parameter spaces, configurations, posteriors) live in ``arms/`` and
``bandit/``; these classes only store them and are converted at the service edge.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from api.enums import (
    ArmStatus,
    DeliveryStatus,
    Direction,
    ExperimentStatus,
    ExpertStatus,
    ExposureSource,
    MetricRole,
    Mode,
    NotificationKind,
    PhaseTrigger,
    Role,
)
from arms.origins import Origin

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit key for events.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


def as_utc(moment: datetime) -> datetime:
    """``moment`` with UTC attached when it is naive: everything stored is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite hands back naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)


E = TypeVar("E", bound=StrEnum)


class EnumText(TypeDecorator[E]):
    """A StrEnum stored as its value in a VARCHAR(``length``, 16 by default; no database
    enum type: adding a member needs no migration); read back as the member. A member
    longer than the column is refused at import: PostgreSQL would refuse the row (SQLite
    would not), so the mistake would otherwise surface only there, at run time."""

    impl = String
    cache_ok = True

    def __init__(self, enum: type[E], length: int = 16) -> None:
        longest = max(enum, key=len)
        if len(longest) > length:
            raise ValueError(f"{enum.__name__}.{longest.name} is longer than {length} characters")
        super().__init__(length)
        self.enum = enum

    def process_bind_param(self, value: E | str | None, dialect: Dialect) -> str | None:
        return None if value is None else self.enum(value).value

    def process_result_value(self, value: str | None, dialect: Dialect) -> E | None:
        return None if value is None else self.enum(value)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, datetime: UTCDateTime}


class Experiment(Base):
    __tablename__ = "experiments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    parameters: Mapped[list[Any]] = mapped_column(JSON)
    reference_share: Mapped[float] = mapped_column(Float)
    salt: Mapped[str] = mapped_column(String(64))
    mode: Mapped[Mode] = mapped_column(EnumText(Mode))
    policy: Mapped[str] = mapped_column(String(16))
    policy_params: Mapped[dict[str, Any]] = mapped_column(JSON)
    prior_alpha: Mapped[float] = mapped_column(Float)
    prior_beta: Mapped[float] = mapped_column(Float)
    update_interval_s: Mapped[float] = mapped_column(Float)
    decay: Mapped[float] = mapped_column(Float)
    target_event: Mapped[str] = mapped_column(String(64))
    exposure_source: Mapped[ExposureSource] = mapped_column(EnumText(ExposureSource))
    status: Mapped[ExperimentStatus] = mapped_column(EnumText(ExperimentStatus))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_tick_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    tick_count: Mapped[int] = mapped_column(Integer, default=0)
    # Scheduled windows in which nothing arrived since the last recorded tick (not recorded).
    empty_windows: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Bumped by every change that alters what is served; replicas reload when it moves.
    version: Mapped[int] = mapped_column(Integer, default=0)
    # Window mode: the arm that serves the whole target group until the next tick.
    window_arm_id: Mapped[int | None] = mapped_column(Integer)
    # The genetic step: its settings as given at creation (NULL: never
    # configured; api.services.evolution.settings_in_force then gives the defaults, with
    # max_arms the active arm count); ``evolve_interval_s`` is NULL unless scheduled steps
    # are enabled; ``generation`` counts the applied steps.
    evolution: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    evolve_interval_s: Mapped[float | None] = mapped_column(Float)
    last_evolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Events count only within this many seconds of their ticket's issue (migration 0004).
    attribution_window_s: Mapped[float] = mapped_column(
        Float, default=14_400.0, server_default="14400"
    )
    # Event type (or "*") -> the most events of that type credited per ticket (per
    # exposure); NULL: the defaults (api.services.events.DEFAULT_EVENT_LIMITS).
    max_events_per_exposure: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The nursery (migration 0006; bandit.nursery): until an active arm has
    # nursery_exposures credited exposures, it is served on the nursery's schedule (the
    # nursery arms share nursery_share of the target draws), not by the policy; 0: off.
    nursery_exposures: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    nursery_share: Mapped[float] = mapped_column(Float, default=0.1, server_default="0.1")
    # Posteriors and the report are relative to the reference configuration of the current
    # phase (migration 0007); promoting an arm to reference starts the next phase.
    phase: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # Decisions (migration 0009; api.services.decisions, docs/decisions.md). ``decisions``:
    # the settings as given at creation (NULL: the defaults). ``paused_reason``: who paused
    # the experiment and why (NULL while running). ``winner``: the arm declared the winner
    # and the numbers, with its phase; ``winner_candidate``: the arm passing the thresholds
    # now and since when. ``breaker_baseline``: the bandit group's and the reference's
    # counts per type and bucket when the circuit breaker paused the experiment: after a
    # resume the breaker judges only what was counted since (deferred: a few kB, read only
    # by the decisions).
    decisions: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    paused_reason: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    winner: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    winner_candidate: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    breaker_baseline: Mapped[dict[str, Any] | None] = mapped_column(JSON, deferred=True)
    # The report's sample ratio check failed and was notified (migration 0013):
    # ``{phase, since, snapshot_id}``; NULL once it is ok again, so that the next failure
    # is notified too (api.services.decisions).
    srm_alert: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Unix seconds: tickets issued before this are expired whatever the attribution window
    # (migration 0012). Lengthening the window sets it to when the old window ended, since
    # the per-ticket counts of tickets that had expired may already be purged.
    tickets_valid_from: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # Segmented experiments (migration 0019, docs/segments.md): how many segments open on
    # first sight; NULL: not segmented (everything is segment 0).
    max_segments: Mapped[int | None] = mapped_column(Integer)
    # Sticky assignment (migration 0020, docs/design.md "Sticky assignment"): a target unit's
    # arm is the inverse of the snapshot's allocation probabilities at a hash of (salt, unit,
    # version), so it keeps its arm until the version moves; false: a draw per request.
    sticky: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class Arm(Base):
    __tablename__ = "arms"
    __table_args__ = (Index("ix_arms_experiment_status", "experiment_id", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id"))
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    signature: Mapped[str] = mapped_column(Text)
    origin: Mapped[Origin] = mapped_column(EnumText(Origin))
    parent_ids: Mapped[list[Any]] = mapped_column(JSON)
    generation: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[ArmStatus] = mapped_column(EnumText(ArmStatus))
    alpha: Mapped[float] = mapped_column(Float)
    beta: Mapped[float] = mapped_column(Float)
    # Totals of the applied ticks (what the posterior has seen).
    exposures: Mapped[float] = mapped_column(Float, default=0.0)
    target_events: Mapped[float] = mapped_column(Float, default=0.0)
    # Target events the arm's tickets reported beyond the event limits, never credited.
    quarantined_events: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    retired_reason: Mapped[str | None] = mapped_column(Text)
    # Segmented experiments: the arm's hierarchical prior over segments, Beta(mu kappa,
    # (1 - mu) kappa), fitted by the last applied tick (bandit.hierarchy; NULL before).
    pool_mu: Mapped[float | None] = mapped_column(Float)
    pool_kappa: Mapped[float | None] = mapped_column(Float)
    # Segmented experiments (migration 0022): the names of the segments the arm is served
    # in, NULL for every segment (docs/segments.md "Restricted arms").
    segments: Mapped[list[Any] | None] = mapped_column(JSON)


def reference_of(arms: Iterable[Arm]) -> Arm:
    """The reference arm of the current phase among an experiment's arms.

    Every experiment has exactly one active arm of origin ``reference``; a promotion (a new
    phase) retires the previous one, which keeps its origin and its history.
    """
    references = [arm for arm in arms if arm.origin == Origin.REFERENCE]
    for arm in references:
        if arm.status == ArmStatus.ACTIVE:
            return arm
    if references:  # pragma: no cover - only a hand-edited database has no active one
        return references[-1]
    raise LookupError("the experiment has no reference arm")


class Phase(Base):
    """One phase of an experiment: the span in which one reference configuration, reference
    share and decision metric held, so that posteriors and the report compare like with like.

    A promotion (or an edit of what the comparison means) ends the current phase and starts
    the next; ``summary`` keeps how the phase ended (its final tick, what was discarded, the
    arms' final posteriors and totals) and ``report_snapshot_id`` its final scorecard.
    """

    __tablename__ = "phases"
    __table_args__ = (
        UniqueConstraint("experiment_id", "number", name="uq_phases_experiment_number"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id"))
    number: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reference_arm_id: Mapped[int] = mapped_column(ForeignKey("arms.id"))
    reference_config: Mapped[dict[str, Any]] = mapped_column(JSON)
    reference_share: Mapped[float] = mapped_column(Float)
    target_event: Mapped[str] = mapped_column(String(64))
    trigger: Mapped[PhaseTrigger] = mapped_column(EnumText(PhaseTrigger))
    reason: Mapped[str | None] = mapped_column(Text)
    # What started it: the promoted arm, or the settings changed (field -> before/after).
    changes: Mapped[dict[str, Any]] = mapped_column(JSON)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    report_snapshot_id: Mapped[int | None] = mapped_column(ForeignKey("report_snapshots.id"))


class Event(Base):
    """One reported event, or one flush of server-counted exposures (``event_id`` NULL).

    The rows are the idempotency check of retries (the unique event id) and a record of
    the last ``RANKTUNE_EVENT_RETENTION_DAYS``: the maintenance job deletes older ones
    (``api.services.retention``; ids are handed out in insertion order, so the oldest rows
    are the first range of the primary key). What the ticks count is :class:`PendingBatch`,
    added to in the same transaction as the rows, so no count needs a row after its commit.
    ``tick_id`` is no longer set (migration 0003): it stays NULL, and is kept only because
    dropping a column rewrites the whole table on SQLite.
    """

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("experiment_id", "event_id", name="uq_events_experiment_event_id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id"))
    arm_id: Mapped[int] = mapped_column(Integer)
    # "target", "reference", or "inactive" (served while the experiment was not running).
    group: Mapped[str] = mapped_column("assignment_group", String(16))
    type: Mapped[str] = mapped_column(String(64))
    count: Mapped[int] = mapped_column(Integer)
    event_id: Mapped[str | None] = mapped_column(String(128))
    payload_hash: Mapped[str | None] = mapped_column(String(32))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    tick_id: Mapped[int | None] = mapped_column(Integer)
    # The part of ``count`` that may be credited (NULL for rows stored before migration
    # 0004: all of it); the rest was over the ticket's limit, or arrived for a retired arm
    # or an experiment that was not running (see ``PendingBatch.kinds``).
    credited: Mapped[int | None] = mapped_column(Integer)


class PendingBatch(Base):
    """What one writer transaction added to an experiment's counts waiting for a tick: the
    totals of its stored events per key (arm, group, type, reason, report bucket, segment),
    packed as parallel arrays. Append-only: the event writer inserts one row per experiment
    it touched, in the transaction that stores the events; a tick that applies deletes
    exactly the batches it read, in the transaction of the posterior update, and re-inserts
    what it does not consume (the segments without reference exposures) as one new batch; a
    tick that cannot apply leaves them for the next (carry forward). So, per experiment,
    group and type: applied ticks + pending batches == stored events (until events older
    than the retention window are pruned). Writers only insert, so they never wait on a
    tick, and a tick reads a few rows however many keys its window has (migration 0025,
    which replaced ``pending_counts``, one row per key).

    The arrays (``api.db.pack_ints``: integers in the narrowest type that holds them) hold
    one entry per key, each key once in a batch (the same key may be in several batches: the
    reader sums them). ``kinds`` is the batch's vocabulary: the (group, type, reason)
    triples its keys use, sorted, as JSON; ``kind_codes`` index it. Reason "" is what a tick
    may credit; any other says why not (``api.limits``).
    """

    __tablename__ = "pending_batches"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id"), index=True)
    # The batch's credited reference-group exposures (any arm): "can this window apply?"
    # (``repositories.has_reference_exposures_pending``) without unpacking anything.
    reference_exposures: Mapped[int] = mapped_column(BigInteger)
    kinds: Mapped[list[list[str]]] = mapped_column(JSON)
    arm_ids: Mapped[bytes] = mapped_column(LargeBinary)
    kind_codes: Mapped[bytes] = mapped_column(LargeBinary)
    # The unit's report bucket (api.serving.REPORT_BUCKETS): the tick adds the credited
    # counts of the report's metrics to ``metric_counts`` by bucket.
    buckets: Mapped[bytes] = mapped_column(LargeBinary)
    # The segment's index (0 for unsegmented experiments): a tick applies each segment's
    # counts to that segment's posteriors.
    segments: Mapped[bytes] = mapped_column(LargeBinary)
    counts: Mapped[bytes] = mapped_column(LargeBinary)


class Segment(Base):
    """One segment of a segmented experiment (issue 12): the client's string, the index
    its tickets carry. Index 0 is the default segment (named ``default``), every other one
    opened on first sight, in order, up to the experiment's ``max_segments``."""

    __tablename__ = "segments"
    __table_args__ = (
        UniqueConstraint("experiment_id", "name", name="uq_segments_experiment_name"),
    )

    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id"), primary_key=True)
    index: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ArmSegmentState(Base):
    """An arm's per-segment state, packed: one row per arm, each column an array over the
    segments by index (``api.db.pack_floats``: float64, or the narrowest integers when all
    are whole). ``alphas``/``betas`` are the reference-ratio posteriors from each segment's
    own data (the prior plus the segment's evidence), ``exposures``/``target_events`` the
    credited totals there. What assignment draws from is this evidence on the arm's pooled
    prior (``Arm.pool_mu``, ``Arm.pool_kappa``): see docs/segments.md. The reference arm has
    a row too (its group's exposures and events per segment; its posteriors hold the prior).
    Segments beyond an array's length, and arms without a row, have no data yet (the prior,
    zero counts). One row per arm, not per (arm, segment): a tick of 1,000 segments x 20
    arms writes 21 rows instead of 21,000 (migration 0023)."""

    __tablename__ = "arm_segment_states"

    arm_id: Mapped[int] = mapped_column(ForeignKey("arms.id"), primary_key=True)
    alphas: Mapped[bytes] = mapped_column(LargeBinary)
    betas: Mapped[bytes] = mapped_column(LargeBinary)
    exposures: Mapped[bytes] = mapped_column(LargeBinary)
    target_events: Mapped[bytes] = mapped_column(LargeBinary)
    # The target events the segment's windows did not credit to the arm (over a ticket's
    # limit or the (arm, segment)'s exposure cap), migration 0028; NULL: none known (rows
    # written before), read as zeros.
    quarantined_events: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    # sum n_k^2 / n_r over the windows applied (the fit's dispersion factors), migration
    # 0029; NULL: rows written before, read as the exposures (a factor of 1 so far).
    ratio_moments: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)


class TickSegmentWindow(Base):
    """One applied tick's per-(segment, arm) record, packed: the (segment, arm) pairs with
    data in the window, one array each (``api.db.pack_ints``/``pack_floats``: the
    narrowest integers, float64 where a value is not whole), their counts, increments and
    posteriors after the update (the reference arm's pairs have zero increments). One row
    per tick (migration 0023), read by one segment's report's health checks."""

    __tablename__ = "tick_segment_windows"

    tick_id: Mapped[int] = mapped_column(ForeignKey("ticks.id"), primary_key=True)
    segments: Mapped[bytes] = mapped_column(LargeBinary)
    arm_ids: Mapped[bytes] = mapped_column(LargeBinary)
    exposures: Mapped[bytes] = mapped_column(LargeBinary)
    target_events: Mapped[bytes] = mapped_column(LargeBinary)
    alpha_increments: Mapped[bytes] = mapped_column(LargeBinary)
    beta_increments: Mapped[bytes] = mapped_column(LargeBinary)
    alphas_after: Mapped[bytes] = mapped_column(LargeBinary)
    betas_after: Mapped[bytes] = mapped_column(LargeBinary)


class MetricCount(Base):
    """The report's data: credited counts per phase, arm, group, event type and unit bucket.

    Applied ticks add their windows' credited counts here, for the event types the report
    shows (exposures, the decision metric and the declared metrics), so the report reads
    O(arms x metrics x buckets) rows whatever the traffic. A unit's bucket is a hash of the
    unit, so buckets are independent clusters of units: their spread is the variance of a
    rate under randomisation by unit (bandit.report, docs/statistics.md). Kept per segment
    (segment 0 unless the experiment is segmented), so each segment has its report.
    """

    __tablename__ = "metric_counts"

    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id"), primary_key=True)
    phase: Mapped[int] = mapped_column(Integer, primary_key=True)
    arm_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    group: Mapped[str] = mapped_column("assignment_group", String(16), primary_key=True)
    type: Mapped[str] = mapped_column(String(64), primary_key=True)
    bucket: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The segment's index (migration 0021; 0 for unsegmented experiments): one segment's
    # report reads its rows, the overall report their sum.
    segment: Mapped[int] = mapped_column(Integer, primary_key=True, server_default="0")
    count: Mapped[int] = mapped_column(BigInteger)


class MetricCountBatch(Base):
    """One applied tick's credited report counts of one group and event type, packed: the
    keys' arm ids, report buckets and segments and their counts as integer arrays
    (``api.db.pack_ints``). The report reads these with ``metric_counts`` (in one
    statement, so a fold never makes it count a batch twice or miss it); maintenance folds
    them into ``metric_counts`` and deletes them (``repositories.fold_metric_batches``). A
    tick inserts a few rows instead of one upsert per (arm, group, type, bucket, segment):
    42,000 for a dense window of 1,000 segments x 20 arms (migration 0024)."""

    __tablename__ = "metric_count_batches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id"), index=True)
    phase: Mapped[int] = mapped_column(Integer)
    group: Mapped[str] = mapped_column("assignment_group", String(16))
    type: Mapped[str] = mapped_column(String(64))
    arm_ids: Mapped[bytes] = mapped_column(LargeBinary)
    buckets: Mapped[bytes] = mapped_column(LargeBinary)
    segments: Mapped[bytes] = mapped_column(LargeBinary)
    counts: Mapped[bytes] = mapped_column(LargeBinary)


class ExperimentMetric(Base):
    """A secondary or guardrail metric of an experiment: an event type and its direction.

    The decision metric is the experiment's ``target_event`` and has no row here. Removing
    a metric sets ``removed_at``: its counts stay, and it can be declared again (a new row,
    whose :class:`MetricBaseline` makes it count from then on).
    """

    __tablename__ = "experiment_metrics"
    __table_args__ = (Index("ix_experiment_metrics_experiment", "experiment_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id"))
    event: Mapped[str] = mapped_column(String(64))
    role: Mapped[MetricRole] = mapped_column(EnumText(MetricRole))
    direction: Mapped[Direction] = mapped_column(EnumText(Direction))
    # Guardrails: the tolerated relative loss (0.05: may not get 5% worse); else NULL.
    max_loss: Mapped[float | None] = mapped_column(Float)
    added_at: Mapped[datetime] = mapped_column(UTCDateTime)
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class MetricBaseline(Base):
    """The report's counts of one phase as they stood when a metric was declared.

    Applied ticks add a declared metric's events to ``metric_counts`` only from its
    declaration on, while exposures were counted from the start of the phase: without a
    baseline, a metric declared mid-phase would be divided by exposures that could not
    have produced its events, and an arm that the bandit favoured before the declaration
    would look worse than it is. So a declaration copies the phase's exposure counts (and
    the event's own, left from an earlier declaration of the same event) here, and the
    report subtracts them: every metric compares the events and the exposures of the same
    period. Written once per declaration (migration 0011).
    """

    __tablename__ = "metric_baselines"

    metric_id: Mapped[int] = mapped_column(ForeignKey("experiment_metrics.id"), primary_key=True)
    phase: Mapped[int] = mapped_column(Integer, primary_key=True)
    arm_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    group: Mapped[str] = mapped_column("assignment_group", String(16), primary_key=True)
    type: Mapped[str] = mapped_column(String(64), primary_key=True)
    bucket: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The segment's index (migration 0021): each segment's report subtracts its own.
    segment: Mapped[int] = mapped_column(Integer, primary_key=True, server_default="0")
    count: Mapped[int] = mapped_column(BigInteger)


class TicketCredit(Base):
    """How many events of one type each ticket has reported, to bound what it credits.

    The event writer adds to these rows in the transaction that stores the events (an
    atomic upsert, so replicas sharing the database agree). The key is the ticket's signed
    bytes (``TicketClaims.key``: version, issue time, experiment, arm, ...) followed by the
    event type, so keys sort by issue time and the rows past the attribution window are one
    range of the primary key, purged by the maintenance job: events on an expired ticket are
    refused anyway. One row per ticket and type reported, written with every batch: one
    column of key, no foreign key, no second index, and on SQLite the primary key is the
    table (``WITHOUT ROWID``).
    """

    __tablename__ = "ticket_credits"
    __table_args__ = {"sqlite_with_rowid": False}

    key: Mapped[bytes] = mapped_column(LargeBinary(96), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)


class Tick(Base):
    __tablename__ = "ticks"
    __table_args__ = (
        UniqueConstraint("experiment_id", "number", name="uq_ticks_experiment_number"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id"))
    number: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # False when the window had no reference exposure and its data were carried forward.
    applied: Mapped[bool] = mapped_column(Boolean)
    mode: Mapped[Mode] = mapped_column(EnumText(Mode))
    decay: Mapped[float] = mapped_column(Float)
    reference_exposures: Mapped[float] = mapped_column(Float)
    reference_events: Mapped[float] = mapped_column(Float)
    target_exposures: Mapped[float] = mapped_column(Float)
    target_events: Mapped[float] = mapped_column(Float)
    window_arm_id: Mapped[int | None] = mapped_column(Integer)
    next_window_arm_id: Mapped[int | None] = mapped_column(Integer)
    replica: Mapped[str | None] = mapped_column(String(64))
    # Empty scheduled windows skipped (not recorded) since the previous recorded tick.
    empty_windows_before: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Target events reported beyond the event limits (per ticket, or the arm's exposures
    # times the limit), in both groups: stored, never credited.
    quarantined_events: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    # What the tick consumed without crediting: reason -> event type -> count.
    uncredited: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The experiment's version once this tick applied (the next window is served with it),
    # and whether it changed during this window (an admin action or a genetic step; NULL:
    # unknown, before migration 0018 or without an earlier recorded tick).
    snapshot_version: Mapped[int | None] = mapped_column(Integer)
    snapshot_changed: Mapped[bool | None] = mapped_column(Boolean)


class TickArm(Base):
    __tablename__ = "tick_arms"

    tick_id: Mapped[int] = mapped_column(ForeignKey("ticks.id"), primary_key=True)
    arm_id: Mapped[int] = mapped_column(ForeignKey("arms.id"), primary_key=True)
    exposures: Mapped[float] = mapped_column(Float)
    target_events: Mapped[float] = mapped_column(Float)
    alpha_increment: Mapped[float] = mapped_column(Float)
    beta_increment: Mapped[float] = mapped_column(Float)
    alpha_before: Mapped[float] = mapped_column(Float)
    beta_before: Mapped[float] = mapped_column(Float)
    alpha_after: Mapped[float] = mapped_column(Float)
    beta_after: Mapped[float] = mapped_column(Float)
    quarantined_events: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    # P(a target request of the window was served this arm): the policy's choice probability
    # under the window's posteriors (request mode), 1 or 0 (window mode); NULL before 0018.
    propensity: Mapped[float | None] = mapped_column(Float)
    # Window mode: the probability the draw that pinned the window's arm gave this arm.
    draw_probability: Mapped[float | None] = mapped_column(Float)


class Generation(Base):
    """One applied genetic step: what it retired (and why) and what it added (and whence).

    ``retired`` and ``added`` list one object per arm; ``details`` keeps the rest of the
    plan (ranking, skipped slots, expert-queue outcomes, notes, settings, seed).
    """

    __tablename__ = "generations"
    __table_args__ = (
        UniqueConstraint("experiment_id", "number", name="uq_generations_experiment_number"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id"))
    number: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # "schedule" or "admin" (genetic steps), "guardrail" (an arm retired by a guardrail:
    # api.services.decisions records it here so the arm set's history is in one place)
    trigger: Mapped[str] = mapped_column(String(16))
    replica: Mapped[str | None] = mapped_column(String(64))
    retired: Mapped[list[Any]] = mapped_column(JSON)
    added: Mapped[list[Any]] = mapped_column(JSON)
    details: Mapped[dict[str, Any]] = mapped_column(JSON)


class ExpertConfig(Base):
    """An expert configuration queued for the next genetic step of its experiment.

    ``status``: ``waiting`` (in the queue), ``consumed`` (became arm ``consumed_by_arm_id``
    in ``generation``), ``rejected`` (the step found it invalid or a duplicate; ``detail``
    says which) or ``withdrawn`` (by an admin).
    """

    __tablename__ = "expert_configs"
    __table_args__ = (Index("ix_expert_configs_experiment_status", "experiment_id", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id"))
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    signature: Mapped[str] = mapped_column(Text)
    note: Mapped[str | None] = mapped_column(Text)
    status: Mapped[ExpertStatus] = mapped_column(EnumText(ExpertStatus))
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    generation: Mapped[int | None] = mapped_column(Integer)
    consumed_by_arm_id: Mapped[int | None] = mapped_column(ForeignKey("arms.id"))
    detail: Mapped[str | None] = mapped_column(Text)


class AuditEntry(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    experiment_id: Mapped[int | None] = mapped_column(Integer)
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Which token acted: "<name> (<prefix>)" of a stored token, "RANKTUNE_ADMIN_TOKEN" for
    # the bootstrap admin token; NULL for the scheduler and for entries before 0015.
    token: Mapped[str | None] = mapped_column(String(96))


class Notification(Base):
    """Something admins are told about (``api.enums.NotificationKind``): written in the
    transaction of the decision that caused it (an outbox), so a notification exists exactly
    when its decision committed; the webhook deliverer sends it after the commit."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_experiment", "experiment_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int | None] = mapped_column(ForeignKey("experiments.id"))
    # VARCHAR(32): "guardrail_tripped" has 17 characters.
    kind: Mapped[NotificationKind] = mapped_column(EnumText(NotificationKind, 32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)


class Webhook(Base):
    """Where notifications are POSTed: one experiment's (``experiment_id``) or every
    experiment's (NULL), of the kinds in ``events`` (NULL: every kind). ``secret`` signs
    each body (HMAC-SHA256); it is kept because the server signs with it, and never shown
    again after creation. Deleting a webhook deactivates it: its deliveries stay."""

    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(String(2048))
    experiment_id: Mapped[int | None] = mapped_column(ForeignKey("experiments.id"))
    events: Mapped[list[Any] | None] = mapped_column(JSON)
    secret: Mapped[str] = mapped_column(String(256))
    active: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    deactivated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WebhookDelivery(Base):
    """One notification's delivery to one webhook: created with the notification for every
    active webhook it matched (so exactly one row per pair), attempted by whichever
    replica's deliverer claims it (``claimed_by`` until ``claimed_until``), retried at
    ``next_attempt_at`` until it is delivered, fails for good, or runs out of attempts."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint(
            "notification_id", "webhook_id", name="uq_webhook_deliveries_notification_webhook"
        ),
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_webhook", "webhook_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    notification_id: Mapped[int] = mapped_column(ForeignKey("notifications.id"))
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id"))
    status: Mapped[DeliveryStatus] = mapped_column(EnumText(DeliveryStatus))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # NULL once the delivery is over (delivered, failed or cancelled).
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The receiver's HTTP status of the last attempt (NULL: no answer, see last_error).
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ReportSnapshot(Base):
    """The scorecard as it stood when a decision was taken (guardrail trip, pause,
    promotion, winner): "what did we know when we decided"."""

    __tablename__ = "report_snapshots"
    __table_args__ = (Index("ix_report_snapshots_experiment", "experiment_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id"))
    phase: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # What was decided: "guardrail", "circuit_breaker", "winner", "promote", "phase_end", ...
    trigger: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)
    report: Mapped[dict[str, Any]] = mapped_column(JSON)


class ServerSecret(Base):
    """Secrets shared by every replica of one database (the ticket signing key)."""

    __tablename__ = "server_secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))


class ApiToken(Base):
    """A token of the admin or client API (``api.tokens``): only its SHA-256 is kept (the
    token is shown once, when it is created), with a short prefix that recognises it in
    lists and the audit log. Revoking sets ``revoked_at``; the row stays for the audit."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    role: Mapped[Role] = mapped_column(EnumText(Role))
    # Hex SHA-256 of the whole token: tokens are looked up by it.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Written by the replicas about once a minute, not on every use.
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
