"""Every query of the service. Services call these; routes never touch the session."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from sqlalchemy import (
    ColumnElement,
    Connection,
    Integer,
    LargeBinary,
    Select,
    case,
    cast,
    delete,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.orm import InstrumentedAttribute, Session, aliased, defer

from api.db import (
    add_counts,
    driver_rows,
    insert_rows,
    pack_floats,
    pack_ints,
    param_mark,
    unpack_floats,
    unpack_ints,
    update_rows,
)
from api.enums import (
    CLOSED_STATUSES,
    ArmStatus,
    DeliveryStatus,
    ExperimentStatus,
    ExpertStatus,
    NotificationKind,
)
from api.models import (
    ApiToken,
    Arm,
    ArmSegmentState,
    AuditEntry,
    Event,
    Experiment,
    ExperimentMetric,
    ExpertConfig,
    Generation,
    MetricBaseline,
    MetricCount,
    MetricCountBatch,
    Notification,
    PendingBatch,
    Phase,
    ReportSnapshot,
    Segment,
    ServerSecret,
    Tick,
    TickArm,
    TicketCredit,
    TickSegmentWindow,
    Webhook,
    WebhookDelivery,
)
from api.pending import (
    BATCH_COLUMNS,
    BatchValues,
    PendingColumns,
    pack_columns,
    sum_batches,
)
from api.pending import PendingRow as PendingRow
from api.tickets import VERSIONS as TICKET_VERSIONS
from api.tickets import key_before
from api.tokens import acting_token

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


# -- experiments ---------------------------------------------------------------------------
def get_experiment_by_name(session: Session, name: str, *, lock: bool = False) -> Experiment | None:
    query = select(Experiment).where(Experiment.name == name)
    return session.scalars(_locked(query) if lock else query).one_or_none()


def get_experiment(
    session: Session, experiment_id: int, *, lock: bool = False
) -> Experiment | None:
    query = select(Experiment).where(Experiment.id == experiment_id)
    return session.scalars(_locked(query) if lock else query).one_or_none()


def _locked(query: Select[Experiment]) -> Select[Experiment]:
    """The experiment row, locked until the transaction ends, with the values committed
    when the lock was granted.

    FOR NO KEY UPDATE on PostgreSQL (key_share=True): concurrent event inserts, which take
    FOR KEY SHARE through the foreign key, go on; a second ticker or admin waits. SQLite
    ignores it (BEGIN IMMEDIATE already serialises writers). ``populate_existing``: without
    it SQLAlchemy hands back the object this session already loaded, with the values read
    before the lock (and before the change the lock waited for), and a change made from
    them would silently undo the other one.
    """
    return query.with_for_update(key_share=True).execution_options(populate_existing=True)


def list_experiments(session: Session) -> Sequence[Experiment]:
    return session.scalars(select(Experiment).order_by(Experiment.id)).all()


def database_revisions(session: Session) -> list[str]:
    """The migration revisions the database is at (Alembic's ``alembic_version``)."""
    return [str(row[0]) for row in session.execute(text("SELECT version_num FROM alembic_version"))]


def experiment_versions(session: Session) -> list[tuple[int, str, int]]:
    rows = session.execute(select(Experiment.id, Experiment.name, Experiment.version)).all()
    return [(row[0], row[1], row[2]) for row in rows]


def bump_version(experiment: Experiment, now: datetime) -> None:
    """``version = version + 1`` in the UPDATE itself, so no change is lost even if the
    object's value was stale; the attribute reloads from the database when next read."""
    experiment.version = Experiment.version + 1
    experiment.updated_at = now


def running_experiment_ids(session: Session) -> list[int]:
    return list(
        session.scalars(select(Experiment.id).where(Experiment.status == ExperimentStatus.RUNNING))
    )


# -- arms ----------------------------------------------------------------------------------
def arms_of(
    session: Session,
    experiment_id: int,
    *,
    active_only: bool = False,
    without_configs: bool = False,
) -> Sequence[Arm]:
    """The experiment's arms by id. ``without_configs``: their configurations and parents
    (JSON) not loaded until read, for the tick, which reads posteriors and counts of
    hundreds of arms."""
    query = select(Arm).where(Arm.experiment_id == experiment_id)
    if active_only:
        query = query.where(Arm.status == ArmStatus.ACTIVE)
    if without_configs:
        query = query.options(defer(Arm.config), defer(Arm.parent_ids))
    return session.scalars(query.order_by(Arm.id)).all()


def arm_origins(session: Session, experiment_id: int) -> list[tuple[int, str]]:
    """(id, origin) of every arm of the experiment, by id: what a plot labels them with."""
    rows = session.execute(
        select(Arm.id, Arm.origin).where(Arm.experiment_id == experiment_id).order_by(Arm.id)
    )
    return [(int(arm_id), str(origin)) for arm_id, origin in rows]


def get_arm(session: Session, experiment_id: int, arm_id: int) -> Arm | None:
    return session.scalars(
        select(Arm).where(Arm.experiment_id == experiment_id, Arm.id == arm_id)
    ).one_or_none()


def active_arm_with_signature(session: Session, experiment_id: int, signature: str) -> Arm | None:
    return session.scalars(
        select(Arm).where(
            Arm.experiment_id == experiment_id,
            Arm.status == ArmStatus.ACTIVE,
            Arm.signature == signature,
        )
    ).first()


# -- events --------------------------------------------------------------------------------
def _encoded(values: Sequence[str]) -> tuple[IntArray, tuple[str, ...]]:
    """Strings as codes into their distinct values (in order of first appearance)."""
    vocabulary = {value: code for code, value in enumerate(dict.fromkeys(values))}
    codes = np.fromiter(map(vocabulary.__getitem__, values), np.int64, len(values))
    return codes, tuple(vocabulary)


@dataclass(frozen=True, eq=False)
class PendingWindow:
    """Pending counts of an experiment as columns, one entry per key (the pending batches
    summed by key, :meth:`of_columns`, in key order): the integer columns as int64 arrays,
    the strings (``group``, ``type``, ``reason``) as codes into their vocabularies (row
    ``i``'s group is ``groups[group[i]]``). A segmented tick reads tens of thousands of
    keys: it selects and sums them by masks of these arrays instead of looping over a tuple
    per key."""

    arm_id: IntArray
    group: IntArray
    type: IntArray
    reason: IntArray
    bucket: IntArray
    count: IntArray
    segment: IntArray
    groups: tuple[str, ...]
    types: tuple[str, ...]
    reasons: tuple[str, ...]

    @classmethod
    def of(cls, rows: Sequence[Sequence[Any]]) -> PendingWindow:
        """The window of ``rows`` in :class:`PendingRow`'s field order (PendingRows, or a
        driver's tuples with every field)."""
        if not rows:
            empty = np.zeros(0, np.int64)
            return cls(empty, empty, empty, empty, empty, empty, empty, (), (), ())
        arm_id, group, type_, reason, bucket, count, segment = zip(*rows, strict=True)
        n = len(rows)
        group_codes, groups = _encoded(group)
        type_codes, types = _encoded(type_)
        reason_codes, reasons = _encoded(reason)
        return cls(
            np.fromiter(arm_id, np.int64, n),
            group_codes,
            type_codes,
            reason_codes,
            np.fromiter(bucket, np.int64, n),
            np.fromiter(count, np.int64, n),
            np.fromiter(segment, np.int64, n),
            groups,
            types,
            reasons,
        )

    @classmethod
    def of_columns(cls, columns: PendingColumns) -> PendingWindow:
        """The window of pending counts summed from batches (``api.pending``): the batches'
        (group, type, reason) codes split into the three columns' codes."""
        kinds = columns.kinds
        groups, types, reasons = (
            tuple(sorted({kind[part] for kind in kinds})) for part in range(3)
        )
        if not kinds:
            return cls.of([])
        group_of, type_of, reason_of = (
            np.array([vocabulary.index(kind[part]) for kind in kinds], dtype=np.int64)
            for part, vocabulary in enumerate((groups, types, reasons))
        )
        codes = columns.kind_codes
        return cls(
            columns.arm_ids,
            group_of[codes],
            type_of[codes],
            reason_of[codes],
            columns.buckets,
            columns.counts,
            columns.segments,
            groups,
            types,
            reasons,
        )

    def __len__(self) -> int:
        return int(self.count.size)

    def group_is(self, group: str) -> BoolArray:
        return _equal(self.group, self.groups, group)

    def type_is(self, kind: str) -> BoolArray:
        return _equal(self.type, self.types, kind)

    def type_in(self, kinds: Collection[str]) -> BoolArray:
        codes = [code for code, kind in enumerate(self.types) if kind in kinds]
        return np.isin(self.type, codes)

    def reason_is(self, reason: str) -> BoolArray:
        return _equal(self.reason, self.reasons, reason)

    def select(self, mask: BoolArray) -> PendingWindow:
        """The rows where ``mask`` holds, in order (the same vocabularies)."""
        return replace(
            self,
            arm_id=self.arm_id[mask],
            group=self.group[mask],
            type=self.type[mask],
            reason=self.reason[mask],
            bucket=self.bucket[mask],
            count=self.count[mask],
            segment=self.segment[mask],
        )

    def with_reason(self, mask: BoolArray, reason: str) -> PendingWindow:
        """The same rows, those where ``mask`` holds given ``reason``."""
        if not mask.any():
            return self
        reasons = self.reasons if reason in self.reasons else (*self.reasons, reason)
        codes = np.where(mask, reasons.index(reason), self.reason)
        return replace(self, reason=codes, reasons=reasons)

    def totals(self, mask: BoolArray, keys: IntArray) -> dict[int, float]:
        """The counts of the rows where ``mask`` holds, summed by their ``keys`` (an array
        by row), keys in order of first appearance."""
        selected = keys[mask]
        if not selected.size:
            return {}
        unique, first, inverse = np.unique(selected, return_index=True, return_inverse=True)
        sums = np.bincount(inverse, self.count[mask].astype(np.float64), unique.size)
        order = np.argsort(first)
        return dict(zip(unique[order].tolist(), sums[order].tolist(), strict=True))

    def strings(self, column: str) -> list[str]:
        """A string column (``group``, ``type`` or ``reason``) decoded, by row."""
        codes: IntArray = getattr(self, column)
        vocabulary = getattr(self, f"{column}s")
        decoded: list[str] = (
            np.array(vocabulary, dtype=object)[codes].tolist() if vocabulary else []
        )
        return decoded

    def rows(self) -> list[PendingRow]:
        """The rows as :class:`PendingRow` tuples (tests, and paths that read few rows)."""
        return list(
            map(
                PendingRow._make,
                zip(
                    self.arm_id.tolist(),
                    self.strings("group"),
                    self.strings("type"),
                    self.strings("reason"),
                    self.bucket.tolist(),
                    self.count.tolist(),
                    self.segment.tolist(),
                    strict=True,
                ),
            )
        )


def _equal(codes: IntArray, vocabulary: tuple[str, ...], value: str) -> BoolArray:
    if value not in vocabulary:
        return np.zeros(codes.size, dtype=bool)
    equal: BoolArray = codes == vocabulary.index(value)
    return equal


@dataclass(frozen=True)
class PendingRead:
    """An experiment's pending counts as a tick (or a discard) read them: the ids of the
    batches read, which are what it may delete, and their counts summed by key, as a
    window of columns."""

    batch_ids: list[int]
    window: PendingWindow


def pending_counts_for_update(session: Session, experiment_id: int) -> PendingRead:
    """The experiment's batches waiting for a tick, locked until the transaction ends, and
    their counts summed by key (``api.pending``), as columns (:class:`PendingWindow`).

    ``FOR UPDATE`` on PostgreSQL: a second reader (a discard) waits for the tick; writers
    only insert new batches, so they never wait on it, and a batch committed after this
    read is not seen and waits for the next tick. SQLite's ``BEGIN IMMEDIATE`` already
    excludes writers. A window of tens of thousands of keys is a few rows of arrays.
    """
    connection = session.connection()
    lock = " FOR UPDATE" if connection.dialect.name == "postgresql" else ""
    # Straight from the driver; the id is an int, nothing to escape.
    rows = driver_rows(
        connection,
        f"SELECT id, {', '.join(BATCH_COLUMNS[2:])} FROM pending_batches "
        f"WHERE experiment_id = {int(experiment_id)} ORDER BY id{lock}",
        (),
    )
    return PendingRead(
        [int(row[0]) for row in rows],
        PendingWindow.of_columns(sum_batches(row[1:] for row in rows)),
    )


def has_reference_exposures_pending(session: Session, experiment_id: int) -> bool:
    """Whether credited reference-group exposures wait for a tick (no lock): without them a
    window cannot be applied. One indexed query: each batch carries its total."""
    return (
        session.scalar(
            select(PendingBatch.id)
            .where(
                PendingBatch.experiment_id == experiment_id,
                PendingBatch.reference_exposures > 0,
            )
            .limit(1)
        )
        is not None
    )


def insert_pending_batches(
    connection: Connection, batches: Sequence[tuple[int, BatchValues]]
) -> None:
    """Insert (experiment id, packed batch) pairs into ``pending_batches``
    (``api.pending.pack_batch``); the event writer's and the tick's only write to it."""
    if not batches:
        return
    names = ", ".join(BATCH_COLUMNS)
    mark = param_mark(connection)
    json_mark = f"{mark}::json" if connection.dialect.name == "postgresql" else mark
    marks = ", ".join(json_mark if name == "kinds" else mark for name in BATCH_COLUMNS)
    connection.exec_driver_sql(
        f"INSERT INTO pending_batches ({names}) VALUES ({marks})",
        [(experiment_id, *values) for experiment_id, values in batches],
    )


_ID_CHUNK = 5000  # ids per DELETE on SQLite (inlined integers)


def _delete_ids(connection: Connection, table: str, ids: Sequence[int]) -> None:
    """Delete exactly these rows of ``table`` by id: PostgreSQL, one statement with the ids
    as an array; SQLite, inlined integers in chunks."""
    if not ids:
        return
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(
            f"DELETE FROM {table} WHERE id = ANY(%s::bigint[])",
            ("{" + ",".join(str(int(row_id)) for row_id in ids) + "}",),
        )
        return
    for start in range(0, len(ids), _ID_CHUNK):
        listed = ", ".join(str(int(i)) for i in ids[start : start + _ID_CHUNK])
        connection.exec_driver_sql(f"DELETE FROM {table} WHERE id IN ({listed})")


def delete_pending_batches(session: Session, batch_ids: Sequence[int]) -> None:
    """Delete exactly these batches (the ones a tick or a discard read and holds locked):
    a batch committed since that read is not theirs to consume."""
    _delete_ids(session.connection(), "pending_batches", batch_ids)


def pack_window(window: PendingWindow) -> BatchValues:
    """A window's counts (each key once) as one batch (``api.pending.pack_columns``)."""
    n_types, n_reasons = len(window.types), len(window.reasons)
    combined = (window.group * n_types + window.type) * n_reasons + window.reason
    used, kind_codes = np.unique(combined, return_inverse=True)
    kinds = [
        (
            window.groups[code // (n_types * n_reasons)],
            window.types[code // n_reasons % n_types],
            window.reasons[code % n_reasons],
        )
        for code in used.tolist()
    ]
    return pack_columns(
        kinds,
        window.arm_id,
        kind_codes.astype(np.int64),
        window.bucket,
        window.segment,
        window.count,
    )


def consume_pending_counts(
    session: Session, experiment_id: int, batch_ids: Sequence[int], kept: PendingWindow
) -> None:
    """What an applied tick does to the batches it read: delete exactly them and re-insert
    the counts it ``kept`` (the segments it did not apply: they wait for the next tick) as
    one new batch, in the tick's transaction. Batches committed after the read are left
    alone, so every stored count is consumed by exactly one applied tick."""
    delete_pending_batches(session, batch_ids)
    if len(kept):
        insert_pending_batches(session.connection(), [(experiment_id, pack_window(kept))])


def discard_pending_counts(session: Session, experiment_id: int) -> PendingWindow:
    """Delete every pending count of the experiment (every batch, locked by the read);
    what was deleted, summed by key."""
    read = pending_counts_for_update(session, experiment_id)
    delete_pending_batches(session, read.batch_ids)
    return read.window


_METRIC_COUNT_KEY = (
    ("experiment_id", "int"),
    ("phase", "int"),
    ("arm_id", "int"),
    ("assignment_group", "varchar"),
    ("type", "varchar"),
    ("bucket", "int"),
    ("segment", "int"),
)


def add_metric_counts(
    session: Session, experiment_id: int, phase: int, window: PendingWindow
) -> None:
    """Append credited pending counts to the report's counts: one ``metric_count_batches``
    row per (group, event type), its keys and counts packed (each key once, as the caller
    passes them), the kinds in the order they first appear in the window and each one's
    rows in the window's order. :func:`metric_counts` reads them at once;
    :func:`fold_metric_batches` moves them into ``metric_counts`` later, outside the tick."""
    if not len(window):
        return
    n_types = len(window.types)
    kinds = window.group * n_types + window.type
    unique, first = np.unique(kinds, return_index=True)
    connection = session.connection()
    mark = param_mark(connection)
    batches = []
    for kind in unique[np.argsort(first)].tolist():
        mine = kinds == kind
        group, event_type = divmod(kind, n_types)
        batches.append(
            (
                int(experiment_id),
                int(phase),
                window.groups[group],
                window.types[event_type],
                pack_ints(window.arm_id[mine]),
                pack_ints(window.bucket[mine]),
                pack_ints(window.segment[mine]),
                pack_ints(window.count[mine]),
            )
        )
    connection.exec_driver_sql(
        "INSERT INTO metric_count_batches (experiment_id, phase, assignment_group, type, "
        f"arm_ids, buckets, segments, counts) VALUES ({', '.join([mark] * 8)})",
        batches,
    )


def fold_metric_batches(session: Session, experiment_id: int) -> int:
    """Move the experiment's report count batches into ``metric_counts`` (summed by key,
    one upsert per key) and delete them; how many batches. PostgreSQL locks the batches it
    reads (``FOR UPDATE``), so of two folds at once the second finds them gone and folds
    nothing; a batch a tick commits meanwhile waits for the next fold."""
    connection = session.connection()
    lock = " FOR UPDATE" if connection.dialect.name == "postgresql" else ""
    batches = driver_rows(
        connection,
        "SELECT id, phase, assignment_group, type, arm_ids, buckets, segments, counts "
        f"FROM metric_count_batches WHERE experiment_id = {int(experiment_id)} "
        f"ORDER BY id{lock}",
        (),
    )
    if not batches:
        return 0
    by_kind: dict[tuple[int, str, str], list[IntArray]] = {}
    for _, phase, group, kind, *blobs in batches:
        columns = np.stack([unpack_ints(blob) for blob in blobs])  # arm, bucket, segment, count
        by_kind.setdefault((int(phase), str(group), str(kind)), []).append(columns)
    rows: list[tuple[Any, ...]] = [
        (experiment_id, phase, arm_id, group, kind, bucket, segment, count)
        for (phase, group, kind), parts in by_kind.items()
        for (arm_id, bucket, segment), count in _summed_counts(parts, 3)
    ]
    rows.sort()  # key order: the order PostgreSQL's writers lock ``metric_counts`` rows in
    add_counts(connection, "metric_counts", _METRIC_COUNT_KEY, rows)
    _delete_ids(connection, "metric_count_batches", [int(batch[0]) for batch in batches])
    return len(batches)


def _summed_counts(parts: Sequence[IntArray], width: int) -> list[tuple[list[int], int]]:
    """Packed report counts (arrays of rows arm, bucket, segment, count, side by side)
    summed by their first ``width`` rows (arm and bucket; or with the segment): each key
    once, with its total."""
    columns = np.concatenate(parts, axis=1)
    if not columns.shape[1]:
        return []
    keys, inverse = np.unique(columns[:width].T, axis=0, return_inverse=True)
    counts = np.bincount(inverse.ravel(), weights=columns[3], minlength=len(keys))
    return list(zip(keys.tolist(), counts.astype(np.int64).tolist(), strict=True))


def experiments_with_metric_batches(session: Session) -> list[int]:
    """The experiments whose report counts have batches not folded yet."""
    return list(session.scalars(select(MetricCountBatch.experiment_id).distinct()).all())


def declared_metrics(
    session: Session, experiment_id: int, *, with_removed: bool = False
) -> Sequence[ExperimentMetric]:
    """The experiment's secondary and guardrail metrics, in the order they were declared."""
    query = select(ExperimentMetric).where(ExperimentMetric.experiment_id == experiment_id)
    if not with_removed:
        query = query.where(ExperimentMetric.removed_at.is_(None))
    return session.scalars(query.order_by(ExperimentMetric.id)).all()


def metric_events(session: Session, experiment_id: int) -> list[str]:
    """The event types of the experiment's declared (not removed) metrics."""
    return list(
        session.scalars(
            select(ExperimentMetric.event).where(
                ExperimentMetric.experiment_id == experiment_id,
                ExperimentMetric.removed_at.is_(None),
            )
        )
    )


def metric_counts(
    session: Session, experiment_id: int, phase: int, segment: int | None = None
) -> list[tuple[int, str, str, int, int]]:
    """(arm_id, group, type, bucket, count) of the report's counts of one phase: of one
    segment (its index), or summed over the segments, in key order, each key once.

    ``metric_counts`` (summed over segments in the database) and the batches not folded
    yet (``metric_count_batches``, summed here) are read by one statement: a fold that
    commits meanwhile moves counts from one to the other, and a single statement sees
    either side of it, never both or neither (PostgreSQL's read committed gives each
    statement its own snapshot)."""
    # On the connection (Core rows): the ORM's per-row loading was most of a report's read.
    key = (MetricCount.arm_id, MetricCount.group, MetricCount.type, MetricCount.bucket)
    phase_rows = (MetricCount.experiment_id == experiment_id, MetricCount.phase == phase)
    blobs = [cast(null(), LargeBinary) for _ in range(4)]
    if segment is None:
        folded = select(*key, func.sum(MetricCount.count), *blobs).where(*phase_rows)
        folded = folded.group_by(*key)
    else:
        folded = select(*key, MetricCount.count, *blobs).where(
            *phase_rows, MetricCount.segment == segment
        )
    number = cast(null(), Integer)
    batches = select(
        number,
        MetricCountBatch.group,
        MetricCountBatch.type,
        number,
        number,
        MetricCountBatch.arm_ids,
        MetricCountBatch.buckets,
        MetricCountBatch.segments,
        MetricCountBatch.counts,
    ).where(MetricCountBatch.experiment_id == experiment_id, MetricCountBatch.phase == phase)
    totals: dict[tuple[int, str, str, int], int] = {}
    unfolded: dict[tuple[str, str], list[IntArray]] = {}
    result: Any = session.connection().execute(union_all(folded, batches))
    rows: list[tuple[Any, ...]] = [tuple(row) for row in result]
    for arm_id, group, kind, bucket, count, *packed in rows:
        if packed[0] is None:
            key_of = (int(arm_id), str(group), str(kind), int(bucket))
            totals[key_of] = totals.get(key_of, 0) + int(count)
        else:
            columns = np.stack([unpack_ints(blob) for blob in packed])
            if segment is not None:
                columns = columns[:, columns[2] == segment]
            unfolded.setdefault((str(group), str(kind)), []).append(columns)
    for (group, kind), parts in unfolded.items():
        for (arm, bucket_of), added in _summed_counts(parts, 2):
            key_of = (arm, group, kind, bucket_of)
            totals[key_of] = totals.get(key_of, 0) + added
    return [(*key_of, count) for key_of, count in sorted(totals.items())]


def declared_metric(session: Session, experiment_id: int, event: str) -> ExperimentMetric | None:
    """The declaration in force (not removed) of ``event`` as a metric of the experiment."""
    return session.scalars(
        select(ExperimentMetric).where(
            ExperimentMetric.experiment_id == experiment_id,
            ExperimentMetric.event == event,
            ExperimentMetric.removed_at.is_(None),
        )
    ).first()


def latest_metric_declaration(
    session: Session, experiment_id: int, event: str
) -> ExperimentMetric | None:
    """The latest declaration of ``event``, removed or not."""
    return session.scalars(
        select(ExperimentMetric)
        .where(ExperimentMetric.experiment_id == experiment_id, ExperimentMetric.event == event)
        .order_by(ExperimentMetric.id.desc())
        .limit(1)
    ).first()


def copy_metric_baseline(session: Session, metric: ExperimentMetric, phase: int) -> None:
    """Copy the phase's counts of exposures and of the metric's event, as they stand, to the
    metric's baseline (one INSERT ... SELECT; the caller holds the experiment's lock, so no
    tick adds to them meanwhile). The batches not folded yet are folded first."""
    fold_metric_batches(session, metric.experiment_id)
    source = select(
        literal(metric.id),
        MetricCount.phase,
        MetricCount.arm_id,
        MetricCount.group,
        MetricCount.type,
        MetricCount.bucket,
        MetricCount.segment,
        MetricCount.count,
    ).where(
        MetricCount.experiment_id == metric.experiment_id,
        MetricCount.phase == phase,
        MetricCount.type.in_(["exposure", metric.event]),
    )
    session.execute(
        insert(MetricBaseline).from_select(
            [
                "metric_id",
                "phase",
                "arm_id",
                "assignment_group",
                "type",
                "bucket",
                "segment",
                "count",
            ],
            source,
        )
    )


def metric_baselines(
    session: Session, metric_ids: Sequence[int], phase: int, segment: int | None = None
) -> list[tuple[int, int, str, str, int, int]]:
    """(metric_id, arm_id, group, type, bucket, count) of the metrics' baselines in a phase:
    of one segment, or of every segment (a key may then come once per segment)."""
    if not metric_ids:
        return []
    query = select(
        MetricBaseline.metric_id,
        MetricBaseline.arm_id,
        MetricBaseline.group,
        MetricBaseline.type,
        MetricBaseline.bucket,
        MetricBaseline.count,
    ).where(MetricBaseline.metric_id.in_(list(metric_ids)), MetricBaseline.phase == phase)
    if segment is not None:
        query = query.where(MetricBaseline.segment == segment)
    rows = session.connection().execute(query).all()
    return [(int(m), int(a), str(g), str(t), int(b), int(c)) for m, a, g, t, b, c in rows]


def stopped_experiments_with_pending_counts(session: Session) -> Sequence[Experiment]:
    """Stopped or archived experiments that still have pending counts (no tick will come)."""
    has_pending = select(PendingBatch.id).where(PendingBatch.experiment_id == Experiment.id)
    return session.scalars(
        select(Experiment).where(
            Experiment.status.in_(sorted(CLOSED_STATUSES)), has_pending.exists()
        )
    ).all()


def purge_expired_ticket_credits(session: Session, now: float, margin_s: float) -> int:
    """Forget the per-ticket counts of tickets past every experiment's attribution window
    (and ``margin_s`` more): events on them are refused anyway. Keys start with the issue
    time, so that is one range of the primary key; the longest window decides, so no
    experiment loses a count it still needs. Rows deleted."""
    longest = session.scalar(select(func.max(Experiment.attribution_window_s)))
    if longest is None:
        return 0
    cutoff = int(now - float(longest) - margin_s)
    deleted = 0
    lowest = b""  # the first range also takes any key of a version no longer issued
    for version in TICKET_VERSIONS:
        # One key range per ticket version: the keys start with the version, then the time.
        result = session.execute(
            delete(TicketCredit).where(
                TicketCredit.key >= lowest, TicketCredit.key < key_before(cutoff, version)
            )
        )
        lowest = bytes([version + 1])
        deleted += int(getattr(result, "rowcount", 0) or 0)
    return deleted


def longest_attribution_window_s(session: Session) -> float | None:
    """The longest attribution window of any stored experiment (None: no experiment)."""
    longest = session.scalar(select(func.max(Experiment.attribution_window_s)))
    return None if longest is None else float(longest)


class PrunedBatch(NamedTuple):
    """What one batch of :func:`prune_events` did."""

    examined: int  # rows after ``after_id`` looked at (at most the limit)
    deleted: int  # of those, received before the cut-off
    last_id: int | None  # the largest id examined (None: no rows after ``after_id``)


def prune_events(session: Session, *, before: datetime, after_id: int, limit: int) -> PrunedBatch:
    """Delete the events received before ``before`` among the ``limit`` rows with the next
    ids after ``after_id``.

    Ids are handed out in insertion order, so the primary key is the time order of the
    table: the oldest rows are the first range of it, found without an index of its own on
    ``received_at`` (which every insert would pay for). ``received_at`` still decides what
    goes: a row inserted a moment out of order (two writers on PostgreSQL) is left for a
    later batch, never deleted early. ``examined > deleted`` means the batch reached rows
    that are kept: everything older is gone.
    """
    window = select(Event.id).where(Event.id > after_id).order_by(Event.id).limit(limit).subquery()
    last_id, examined = session.execute(select(func.max(window.c.id), func.count())).one()
    if not examined:
        return PrunedBatch(0, 0, None)
    result = session.execute(
        delete(Event)
        .where(Event.id > after_id, Event.id <= last_id, Event.received_at < before)
        .execution_options(synchronize_session=False)
    )
    return PrunedBatch(int(examined), int(getattr(result, "rowcount", 0) or 0), int(last_id))


# -- phases --------------------------------------------------------------------------------
def phases_of(session: Session, experiment_id: int) -> Sequence[Phase]:
    """The experiment's phases, first to current."""
    return session.scalars(
        select(Phase).where(Phase.experiment_id == experiment_id).order_by(Phase.number)
    ).all()


def get_phase(session: Session, experiment_id: int, number: int) -> Phase | None:
    return session.scalars(
        select(Phase).where(Phase.experiment_id == experiment_id, Phase.number == number)
    ).one_or_none()


# -- ticks ---------------------------------------------------------------------------------
# What a tick history shows of each arm a tick updated: the columns of TickArm but tick_id.
TICK_ARM_FIELDS = (
    "arm_id",
    "exposures",
    "target_events",
    "alpha_increment",
    "beta_increment",
    "alpha_before",
    "beta_before",
    "alpha_after",
    "beta_after",
    "quarantined_events",
)


TICK_ARM_COLUMNS = (
    ("tick_id", "int"),
    *((name, "int" if name == "arm_id" else "float8") for name in TICK_ARM_FIELDS),
    ("propensity", "float8"),
    ("draw_probability", "float8"),
)


def insert_tick_arms(session: Session, rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert a tick's per-arm records in bulk (tuples in the order of
    :data:`TICK_ARM_COLUMNS`): one statement, no ORM object per arm."""
    insert_rows(session.connection(), "tick_arms", TICK_ARM_COLUMNS, rows)


ARM_STATE_COLUMNS = (
    ("alpha", "float8"),
    ("beta", "float8"),
    ("exposures", "float8"),
    ("target_events", "float8"),
    ("quarantined_events", "float8"),
)


def update_arm_states(session: Session, arms: Sequence[Arm]) -> None:
    """Write these arms' posteriors and totals (:data:`ARM_STATE_COLUMNS`, as set on the
    objects with ``set_committed_value``, so the session does not flush them again) in one
    statement."""
    update_rows(
        session.connection(),
        "arms",
        ARM_STATE_COLUMNS,
        [
            (arm.alpha, arm.beta, arm.exposures, arm.target_events, arm.quarantined_events, arm.id)
            for arm in arms
        ],
    )


def next_tick_number(session: Session, experiment_id: int) -> int:
    latest = session.scalar(
        select(func.max(Tick.number)).where(Tick.experiment_id == experiment_id)
    )
    return int(latest or 0) + 1


def ticks_of(
    session: Session,
    experiment_id: int,
    *,
    limit: int,
    after: int | None = None,
    before: int | None = None,
    newest_first: bool = False,
) -> Sequence[Tick]:
    """``limit`` ticks numbered after ``after`` and before ``before``: the first ones in
    number order, or with ``newest_first`` the last ones, newest first."""
    query = select(Tick).where(Tick.experiment_id == experiment_id)
    if after is not None:
        query = query.where(Tick.number > after)
    if before is not None:
        query = query.where(Tick.number < before)
    order = Tick.number.desc() if newest_first else Tick.number
    return session.scalars(query.order_by(order).limit(limit)).all()


def latest_tick(session: Session, experiment_id: int) -> Tick | None:
    """The experiment's tick with the highest number (the latest recorded)."""
    return session.scalars(
        select(Tick)
        .where(Tick.experiment_id == experiment_id)
        .order_by(Tick.number.desc())
        .limit(1)
    ).first()


class RecentTick(NamedTuple):
    id: int
    number: int
    created_at: datetime
    applied: bool
    reference_exposures: float


def recent_ticks(session: Session, experiment_id: int, *, limit: int) -> list[RecentTick]:
    """The latest ``limit`` recorded ticks, oldest first, as the report's health checks read
    them (columns only)."""
    rows = session.execute(
        select(Tick.id, Tick.number, Tick.created_at, Tick.applied, Tick.reference_exposures)
        .where(Tick.experiment_id == experiment_id)
        .order_by(Tick.number.desc())
        .limit(limit)
    ).all()
    return [
        RecentTick(int(i), int(n), created, bool(applied), float(reference))
        for i, n, created, applied, reference in rows[::-1]
    ]


def tick_arm_exposures(session: Session, tick_ids: Sequence[int]) -> list[tuple[int, int, float]]:
    """(tick_id, arm_id, exposures) of the arms those ticks updated."""
    if not tick_ids:
        return []
    rows = session.execute(
        select(TickArm.tick_id, TickArm.arm_id, TickArm.exposures).where(
            TickArm.tick_id.in_(list(tick_ids))
        )
    )
    return [(int(t), int(a), float(e)) for t, a, e in rows]


def tick_segment_exposures(
    session: Session, tick_ids: Sequence[int], segment: int
) -> list[tuple[int, int, float]]:
    """(tick_id, arm_id, exposures) of one segment in those ticks (``tick_segment_windows``;
    the reference arm's pairs hold its group's exposures)."""
    found: list[tuple[int, int, float]] = []
    for tick_id, records in tick_segment_records(session, tick_ids).items():
        mine = records.segments == segment
        found.extend(
            (tick_id, arm_id, exposures)
            for arm_id, exposures in zip(
                records.arm_ids[mine].tolist(), records.exposures[mine].tolist(), strict=True
            )
        )
    return found


def latest_ticks(
    session: Session, experiment_id: int, *, limit: int
) -> list[tuple[int, int, bool]]:
    """(id, number, applied) of the latest ``limit`` ticks, in number order (columns only)."""
    rows = session.execute(
        select(Tick.id, Tick.number, Tick.applied)
        .where(Tick.experiment_id == experiment_id)
        .order_by(Tick.number.desc())
        .limit(limit)
    ).all()
    return [(int(tick_id), int(number), bool(applied)) for tick_id, number, applied in rows[::-1]]


def tick_arm_values_of(
    session: Session, tick_ids: Sequence[int]
) -> dict[int, list[dict[str, float | int]]]:
    """Each tick's per-arm values (the fields of ``TickArmOut``), by arm id, read as columns:
    a long history of many arms is hundreds of thousands of rows, too many for ORM objects."""
    grouped: dict[int, list[dict[str, float | int]]] = {tick_id: [] for tick_id in tick_ids}
    if tick_ids:
        rows = session.execute(
            select(TickArm.tick_id, *(TickArm.__table__.c[name] for name in TICK_ARM_FIELDS))
            .where(TickArm.tick_id.in_(tick_ids))
            .order_by(TickArm.tick_id, TickArm.arm_id)
        )
        for tick_id, *values in rows:
            grouped[tick_id].append(dict(zip(TICK_ARM_FIELDS, values, strict=True)))
    return grouped


def posterior_points(
    session: Session, tick_ids: Sequence[int]
) -> list[tuple[int, int, float, float]]:
    """(tick number, arm id, alpha after, beta after) of every arm updated by those ticks."""
    if not tick_ids:
        return []
    rows = session.execute(
        select(Tick.number, TickArm.arm_id, TickArm.alpha_after, TickArm.beta_after)
        .join(Tick, Tick.id == TickArm.tick_id)
        .where(TickArm.tick_id.in_(tick_ids))
    )
    return [(int(n), int(arm), float(a), float(b)) for n, arm, a, b in rows]


# -- evolution -----------------------------------------------------------------------------
def evolving_experiment_ids(session: Session) -> list[int]:
    """Running experiments with scheduled genetic steps."""
    return list(
        session.scalars(
            select(Experiment.id).where(
                Experiment.status == ExperimentStatus.RUNNING,
                Experiment.evolve_interval_s.is_not(None),
            )
        )
    )


def arms_by_ids(session: Session, experiment_id: int, arm_ids: Iterable[int]) -> Sequence[Arm]:
    ids = list(set(arm_ids))
    if not ids:
        return []
    return session.scalars(
        select(Arm).where(Arm.experiment_id == experiment_id, Arm.id.in_(ids)).order_by(Arm.id)
    ).all()


def expert_configs_of(
    session: Session, experiment_id: int, *, status: str | None = None
) -> Sequence[ExpertConfig]:
    """The expert queue of an experiment in submission order (optionally one status)."""
    query = select(ExpertConfig).where(ExpertConfig.experiment_id == experiment_id)
    if status is not None:
        query = query.where(ExpertConfig.status == status)
    return session.scalars(query.order_by(ExpertConfig.id)).all()


def get_expert_config(
    session: Session, experiment_id: int, expert_config_id: int
) -> ExpertConfig | None:
    return session.scalars(
        select(ExpertConfig).where(
            ExpertConfig.experiment_id == experiment_id, ExpertConfig.id == expert_config_id
        )
    ).one_or_none()


def waiting_expert_with_signature(
    session: Session, experiment_id: int, signature: str
) -> ExpertConfig | None:
    return session.scalars(
        select(ExpertConfig).where(
            ExpertConfig.experiment_id == experiment_id,
            ExpertConfig.status == ExpertStatus.WAITING,
            ExpertConfig.signature == signature,
        )
    ).first()


def generations_of(
    session: Session, experiment_id: int, *, limit: int, after: int | None = None
) -> Sequence[Generation]:
    query = select(Generation).where(Generation.experiment_id == experiment_id)
    if after is not None:
        query = query.where(Generation.number > after)
    return session.scalars(query.order_by(Generation.number).limit(limit)).all()


def get_generation(session: Session, experiment_id: int, number: int) -> Generation | None:
    return session.scalars(
        select(Generation).where(
            Generation.experiment_id == experiment_id, Generation.number == number
        )
    ).one_or_none()


# -- notifications and webhooks ------------------------------------------------------------
def active_webhooks_for(session: Session, experiment_id: int | None) -> Sequence[Webhook]:
    """The active webhooks that hear about the experiment: its own and the global ones
    (only the global ones for a notification of no experiment)."""
    scope: ColumnElement[bool] = Webhook.experiment_id.is_(None)
    if experiment_id is not None:
        scope = or_(scope, Webhook.experiment_id == experiment_id)
    return session.scalars(select(Webhook).where(Webhook.active, scope).order_by(Webhook.id)).all()


def get_webhook(session: Session, webhook_id: int) -> Webhook | None:
    return session.get(Webhook, webhook_id)


def webhooks_with_experiment(session: Session) -> list[tuple[Webhook, str | None]]:
    """Every webhook (deleted ones too), by id, with its experiment's name (None: global)."""
    rows = session.execute(
        select(Webhook, Experiment.name)
        .outerjoin(Experiment, Experiment.id == Webhook.experiment_id)
        .order_by(Webhook.id)
    )
    return [(webhook, name) for webhook, name in rows]


def cancel_pending_deliveries(session: Session, webhook_id: int, now: datetime) -> int:
    """Cancel the webhook's deliveries not yet over; how many. One a deliverer is sending
    right now is recorded by it afterwards (its attempt overwrites this)."""
    result = session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.webhook_id == webhook_id,
            WebhookDelivery.status == DeliveryStatus.PENDING,
        )
        .values(status=DeliveryStatus.CANCELLED, next_attempt_at=None, finished_at=now)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def purge_finished_deliveries(session: Session, *, before: datetime, limit: int) -> int:
    """Delete up to ``limit`` deliveries that finished (delivered, failed, cancelled) before
    ``before``; how many. Pending ones stay whatever their age: the deliverer still owes
    them."""
    ids = select(WebhookDelivery.id).where(
        WebhookDelivery.status != DeliveryStatus.PENDING, WebhookDelivery.finished_at < before
    )
    return _delete_in(session, WebhookDelivery.id, ids.order_by(WebhookDelivery.id).limit(limit))


def purge_notifications(session: Session, *, before: datetime, limit: int) -> int:
    """Delete up to ``limit`` notifications created before ``before`` that no delivery
    refers to any more (their deliveries are over and purged, or they had none); how many.
    A report snapshot a notification named stays (phases and the decisions refer to it)."""
    has_delivery = select(WebhookDelivery.id).where(
        WebhookDelivery.notification_id == Notification.id
    )
    ids = (
        select(Notification.id)
        .where(Notification.created_at < before, ~has_delivery.exists())
        .order_by(Notification.id)
        .limit(limit)
    )
    return _delete_in(session, Notification.id, ids)


def purge_tick_segment_records(
    session: Session, *, before: datetime, keep_latest: int, limit: int
) -> int:
    """Delete up to ``limit`` ticks' per-(segment, arm) records (``tick_segment_windows``)
    of ticks made before ``before``, except each experiment's latest ``keep_latest``
    recorded ticks (what a segment's report reads); how many, oldest first."""
    latest = aliased(Tick)
    newest = (
        select(func.max(latest.number))
        .where(latest.experiment_id == Tick.experiment_id)
        .scalar_subquery()
    )
    ids = (
        select(TickSegmentWindow.tick_id)
        .join(Tick, Tick.id == TickSegmentWindow.tick_id)
        .where(Tick.created_at < before, Tick.number <= newest - keep_latest)
        .order_by(TickSegmentWindow.tick_id)
        .limit(limit)
    )
    return _delete_in(session, TickSegmentWindow.tick_id, ids)


def _delete_in(session: Session, key: InstrumentedAttribute[Any], keys: Select[Any]) -> int:
    """Delete the rows of ``key``'s table whose ``key`` the query ``keys`` selects (a
    bounded batch: ``keys`` has its LIMIT); how many."""
    result = session.execute(
        delete(key.class_).where(key.in_(keys)).execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


class ClaimedDelivery(NamedTuple):
    """A delivery a deliverer holds (``claimed_by``), with what it needs to send it."""

    id: int
    claimed_by: str
    attempts: int
    url: str
    secret: str
    webhook_active: bool
    kind: NotificationKind
    experiment: str | None
    created_at: datetime
    payload: dict[str, Any]


def _due(now: datetime) -> list[Any]:
    """The conditions of a delivery that may be attempted at ``now``: pending, due, and not
    held by a deliverer (or held past its claim, by one that died)."""
    return [
        WebhookDelivery.status == DeliveryStatus.PENDING,
        WebhookDelivery.next_attempt_at <= now,
        or_(WebhookDelivery.claimed_until.is_(None), WebhookDelivery.claimed_until < now),
    ]


def has_due_delivery(session: Session, now: datetime) -> bool:
    """Whether some delivery is due (a read: the idle poll takes no write lock)."""
    return session.scalar(select(WebhookDelivery.id).where(*_due(now)).limit(1)) is not None


def claim_due_deliveries(
    session: Session, now: datetime, *, limit: int, claimed_by: str, until: datetime
) -> list[ClaimedDelivery]:
    """Claim up to ``limit`` due deliveries for ``claimed_by`` until ``until``, oldest due
    first, and read what sending them needs.

    On PostgreSQL the rows are read ``FOR UPDATE SKIP LOCKED``: a second replica claiming
    at the same moment skips the rows this transaction holds and takes others, and one that
    reads them after this commit sees them claimed. SQLite has one writer at a time (``BEGIN
    IMMEDIATE``), so there the clause is left out and the claims simply take turns.
    """
    ids = list(
        session.scalars(
            select(WebhookDelivery.id)
            .where(*_due(now))
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    if not ids:
        return []
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id.in_(ids))
        .values(claimed_by=claimed_by, claimed_until=until)
    )
    rows = session.execute(
        select(
            WebhookDelivery.id,
            WebhookDelivery.attempts,
            Webhook.url,
            Webhook.secret,
            Webhook.active,
            Notification.kind,
            Experiment.name,
            Notification.created_at,
            Notification.payload,
        )
        .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
        .join(Notification, Notification.id == WebhookDelivery.notification_id)
        .outerjoin(Experiment, Experiment.id == Notification.experiment_id)
        .where(WebhookDelivery.id.in_(ids))
        .order_by(WebhookDelivery.id)
    )
    return [
        ClaimedDelivery(
            int(delivery_id),
            claimed_by,
            int(attempts),
            url,
            secret,
            bool(active),
            kind,
            name,
            created_at,
            payload,
        )
        for delivery_id, attempts, url, secret, active, kind, name, created_at, payload in rows
    ]


def record_delivery_attempt(
    session: Session, delivery_id: int, claimed_by: str, values: dict[str, Any]
) -> bool:
    """Write an attempt's outcome (``values``; ``attempts`` goes up by one unless given)
    and release the claim, if ``claimed_by`` still holds it (False: its claim expired and
    another deliverer took the delivery over)."""
    result = session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.claimed_by == claimed_by)
        .values(
            {
                "attempts": WebhookDelivery.attempts + 1,
                "claimed_by": None,
                "claimed_until": None,
                **values,
            }
        )
    )
    return int(getattr(result, "rowcount", 0) or 0) == 1


class DeliveryRow(NamedTuple):
    """A delivery as the log shows it: the row, its notification and experiment's name."""

    delivery: WebhookDelivery
    notification: Notification
    experiment: str | None


def deliveries(
    session: Session,
    *,
    webhook_id: int | None,
    experiment_id: int | None,
    status: DeliveryStatus | None,
    before: int | None,
    limit: int,
) -> list[DeliveryRow]:
    """The delivery log, newest first (by id), filtered on what is given."""
    query = (
        select(WebhookDelivery, Notification, Experiment.name)
        .join(Notification, Notification.id == WebhookDelivery.notification_id)
        .outerjoin(Experiment, Experiment.id == Notification.experiment_id)
    )
    if webhook_id is not None:
        query = query.where(WebhookDelivery.webhook_id == webhook_id)
    if experiment_id is not None:
        query = query.where(Notification.experiment_id == experiment_id)
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    if before is not None:
        query = query.where(WebhookDelivery.id < before)
    rows = session.execute(query.order_by(WebhookDelivery.id.desc()).limit(limit))
    return [DeliveryRow(delivery, notification, name) for delivery, notification, name in rows]


def notifications(
    session: Session,
    *,
    experiment_id: int | None,
    kind: NotificationKind | None,
    before: int | None,
    limit: int,
) -> list[tuple[Notification, str | None]]:
    """The outbox, newest first (by id), with each notification's experiment name."""
    query = select(Notification, Experiment.name).outerjoin(
        Experiment, Experiment.id == Notification.experiment_id
    )
    if experiment_id is not None:
        query = query.where(Notification.experiment_id == experiment_id)
    if kind is not None:
        query = query.where(Notification.kind == kind)
    if before is not None:
        query = query.where(Notification.id < before)
    rows = session.execute(query.order_by(Notification.id.desc()).limit(limit))
    return [(notification, name) for notification, name in rows]


# -- report snapshots ----------------------------------------------------------------------
class SnapshotSummary(NamedTuple):
    id: int
    phase: int
    created_at: datetime
    trigger: str
    detail: dict[str, Any]


def report_snapshots(
    session: Session, experiment_id: int, *, limit: int, after: int | None = None
) -> list[SnapshotSummary]:
    """The experiment's stored reports without their (large) documents, oldest first."""
    query = select(
        ReportSnapshot.id,
        ReportSnapshot.phase,
        ReportSnapshot.created_at,
        ReportSnapshot.trigger,
        ReportSnapshot.detail,
    ).where(ReportSnapshot.experiment_id == experiment_id)
    if after is not None:
        query = query.where(ReportSnapshot.id > after)
    rows = session.execute(query.order_by(ReportSnapshot.id).limit(limit))
    return [
        SnapshotSummary(int(i), int(p), created, str(trigger), dict(detail or {}))
        for i, p, created, trigger, detail in rows
    ]


def get_report_snapshot(
    session: Session, experiment_id: int, snapshot_id: int
) -> ReportSnapshot | None:
    return session.scalars(
        select(ReportSnapshot).where(
            ReportSnapshot.experiment_id == experiment_id, ReportSnapshot.id == snapshot_id
        )
    ).one_or_none()


# -- audit and secrets ---------------------------------------------------------------------
def add_audit(
    session: Session,
    *,
    at: datetime,
    action: str,
    experiment_id: int | None,
    details: dict[str, Any],
    actor: str = "admin",
) -> None:
    """An audit entry; its ``token`` is the token of the request being served, if any
    (``api.tokens.acting_token``), so no use case has to pass it along."""
    session.add(
        AuditEntry(
            at=at,
            actor=actor,
            action=action,
            experiment_id=experiment_id,
            details=details,
            token=acting_token.get(),
        )
    )


def audit_entries(
    session: Session, *, experiment_id: int | None, limit: int
) -> Sequence[AuditEntry]:
    query = select(AuditEntry)
    if experiment_id is not None:
        query = query.where(AuditEntry.experiment_id == experiment_id)
    return session.scalars(query.order_by(AuditEntry.id.desc()).limit(limit)).all()


# -- api tokens ------------------------------------------------------------------------------
def add_api_token(session: Session, token: ApiToken) -> ApiToken:
    session.add(token)
    session.flush()
    return token


def api_tokens(session: Session) -> Sequence[ApiToken]:
    """Every stored token, revoked ones too, oldest first."""
    return session.scalars(select(ApiToken).order_by(ApiToken.id)).all()


def active_api_tokens(session: Session) -> Sequence[ApiToken]:
    return session.scalars(select(ApiToken).where(ApiToken.revoked_at.is_(None))).all()


def get_api_token(session: Session, token_id: int) -> ApiToken | None:
    return session.get(ApiToken, token_id)


def touch_api_tokens(session: Session, token_ids: Iterable[int], at: datetime) -> None:
    """Note that these tokens were used (``last_used_at``), at most once a minute."""
    session.execute(
        update(ApiToken).where(ApiToken.id.in_(list(token_ids))).values(last_used_at=at)
    )


def get_secret(session: Session, name: str) -> str | None:
    secret = session.get(ServerSecret, name)
    return secret.value if secret else None


def add_secret(session: Session, name: str, value: str) -> None:
    session.add(ServerSecret(name=name, value=value))


# -- the dashboard's history -----------------------------------------------------------------
def tick_times(session: Session, experiment_id: int, numbers: Sequence[int]) -> dict[int, datetime]:
    """When the ticks with those numbers were recorded (index lookups, no scan)."""
    if not numbers:
        return {}
    rows = session.execute(
        select(Tick.number, Tick.created_at).where(
            Tick.experiment_id == experiment_id, Tick.number.in_(list(numbers))
        )
    )
    return {int(number): created_at for number, created_at in rows}


def first_tick_number_since(
    session: Session, experiment_id: int, moment: datetime, low: int, high: int
) -> int | None:
    """The first tick numbered in ``low..high`` recorded at or after ``moment``."""
    number = session.scalar(
        select(func.min(Tick.number)).where(
            Tick.experiment_id == experiment_id,
            Tick.number.between(low, high),
            Tick.created_at >= moment,
        )
    )
    return None if number is None else int(number)


class TickWindows(NamedTuple):
    """Consecutive ticks taken together (a group of a downsampled history)."""

    last_number: int
    last_applied_number: int | None
    ended_at: datetime
    target_exposures: float  # applied ticks only: what the posteriors counted
    target_events: float
    # Target events at the reference group's rate of each window: sum of target exposures
    # x reference events / reference exposures, per applied tick.
    expected_events: float


def tick_windows(
    session: Session, experiment_id: int, first: int, last: int, step: int
) -> list[TickWindows]:
    """Ticks ``first..last`` in groups of ``step`` consecutive numbers, one row per group,
    summed in the database (a scan of the range, one row out per group)."""
    applied_only = Tick.applied.is_(True)
    group = ((Tick.number - first) // step).label("g")
    rows = session.execute(
        select(
            func.max(Tick.number),
            func.max(case((applied_only, Tick.number), else_=None)),
            func.max(Tick.created_at),
            func.sum(case((applied_only, Tick.target_exposures), else_=0.0)),
            func.sum(case((applied_only, Tick.target_events), else_=0.0)),
            func.sum(
                case(
                    (
                        applied_only & (Tick.reference_exposures > 0),
                        Tick.target_exposures * Tick.reference_events / Tick.reference_exposures,
                    ),
                    else_=0.0,
                )
            ),
        )
        .where(Tick.experiment_id == experiment_id, Tick.number.between(first, last))
        .group_by(group)
        .order_by(group)
    ).all()
    return [
        TickWindows(
            int(number),
            None if applied is None else int(applied),
            ended_at,
            float(exposures or 0.0),
            float(events or 0.0),
            float(expected or 0.0),
        )
        for number, applied, ended_at, exposures, events, expected in rows
    ]


def arm_points(
    session: Session, experiment_id: int, numbers: Sequence[int]
) -> list[tuple[int, int, float, float, float]]:
    """(tick number, arm id, exposures, alpha after, beta after) of every arm the ticks
    with those numbers updated (applied ticks). Read straight from the driver's cursor: a
    chart asks for tens of thousands of these, and turning each row into a result row
    and then a tuple of Python numbers cost more than the query."""
    if not numbers:
        return []
    connection = session.connection()
    mark = param_mark(connection)
    marks = ", ".join([mark] * len(numbers))
    return driver_rows(
        connection,
        "SELECT t.number, a.arm_id, a.exposures, a.alpha_after, a.beta_after "
        "FROM tick_arms AS a JOIN ticks AS t ON t.id = a.tick_id "
        f"WHERE t.experiment_id = {mark} AND t.number IN ({marks})",
        (experiment_id, *[int(n) for n in numbers]),
    )


def audit_entries_with_actions(
    session: Session, experiment_id: int, actions: Iterable[str], *, limit: int
) -> Sequence[AuditEntry]:
    """The experiment's latest audit entries of the given actions, oldest first."""
    rows = session.scalars(
        select(AuditEntry)
        .where(AuditEntry.experiment_id == experiment_id, AuditEntry.action.in_(list(actions)))
        .order_by(AuditEntry.id.desc())
        .limit(limit)
    ).all()
    return rows[::-1]


def experiment_versions_of(session: Session, name: str | None = None) -> list[tuple[str, int]]:
    """(name, version) of one experiment or of all: what the dashboard polls."""
    query = select(Experiment.name, Experiment.version).order_by(Experiment.id)
    if name is not None:
        query = query.where(Experiment.name == name)
    return [(str(n), int(v)) for n, v in session.execute(query)]


def latest_applied_tick_number(session: Session, experiment_id: int) -> int | None:
    """The number of the experiment's latest applied tick (walks the ticks newest first)."""
    number = session.scalar(
        select(Tick.number)
        .where(Tick.experiment_id == experiment_id, Tick.applied.is_(True))
        .order_by(Tick.number.desc())
        .limit(1)
    )
    return None if number is None else int(number)


# -- segments (issue 12; api.services.segments) --------------------------------------------
def segment_names(session: Session, experiment_id: int) -> list[str]:
    """The experiment's segment names in index order (index 0: the default segment)."""
    return list(
        session.scalars(
            select(Segment.name)
            .where(Segment.experiment_id == experiment_id)
            .order_by(Segment.index)
        )
    )


def segment_index(session: Session, experiment_id: int, name: str) -> int | None:
    return session.scalar(
        select(Segment.index).where(Segment.experiment_id == experiment_id, Segment.name == name)
    )


@dataclass(frozen=True)
class ArmSegmentArrays:
    """One arm's packed per-segment state (``arm_segment_states``): arrays over the
    segments by index, of one length (segments beyond it have no data yet)."""

    alphas: FloatArray
    betas: FloatArray
    exposures: FloatArray
    target_events: FloatArray
    quarantined_events: FloatArray
    ratio_moments: FloatArray


_ARM_SEGMENT_COLUMNS = tuple(field.name for field in fields(ArmSegmentArrays))


def arm_segment_states(session: Session, arm_ids: Sequence[int]) -> dict[int, ArmSegmentArrays]:
    """The stored per-segment state of these arms, by arm id (arms without a row have no
    data in any segment; a row without quarantined events, written before migration 0028,
    has none; without ratio moments, before 0029, its exposures stand for them). Straight
    from the driver: one row per arm, an array per column."""
    if not arm_ids:
        return {}
    ids = ", ".join(str(int(arm_id)) for arm_id in arm_ids)  # ints: nothing to escape
    rows = driver_rows(
        session.connection(),
        f"SELECT arm_id, {', '.join(_ARM_SEGMENT_COLUMNS)} FROM arm_segment_states "
        f"WHERE arm_id IN ({ids})",
        (),
    )
    states = {}
    for arm_id, *blobs, quarantined, moments in rows:
        alphas, betas, exposures, events = (unpack_floats(blob) for blob in blobs)
        states[int(arm_id)] = ArmSegmentArrays(
            alphas,
            betas,
            exposures,
            events,
            np.zeros(alphas.size) if quarantined is None else unpack_floats(quarantined),
            exposures.copy() if moments is None else unpack_floats(moments),
        )
    return states


def write_arm_segment_states(session: Session, states: dict[int, ArmSegmentArrays]) -> None:
    """Store these arms' per-segment state whole (one row per arm, inserted or replaced):
    one executemany of a row per arm."""
    if not states:
        return
    connection = session.connection()
    mark = param_mark(connection)
    updates = ", ".join(f"{column} = excluded.{column}" for column in _ARM_SEGMENT_COLUMNS)
    connection.exec_driver_sql(
        f"INSERT INTO arm_segment_states (arm_id, {', '.join(_ARM_SEGMENT_COLUMNS)}) "
        f"VALUES ({', '.join([mark] * (len(_ARM_SEGMENT_COLUMNS) + 1))}) "
        f"ON CONFLICT (arm_id) DO UPDATE SET {updates}",
        [
            (
                int(arm_id),
                *(pack_floats(getattr(state, column)) for column in _ARM_SEGMENT_COLUMNS),
            )
            for arm_id, state in states.items()
        ],
    )


@dataclass(frozen=True)
class TickSegmentRecords:
    """One applied tick's (segment, arm) pairs with data in its window, as parallel arrays
    (``tick_segment_windows``): counts, increments and posteriors after the update."""

    segments: IntArray
    arm_ids: IntArray
    exposures: FloatArray
    target_events: FloatArray
    alpha_increments: FloatArray
    beta_increments: FloatArray
    alphas_after: FloatArray
    betas_after: FloatArray


_TICK_SEGMENT_COLUMNS = tuple(field.name for field in fields(TickSegmentRecords))


def insert_tick_segment_records(
    session: Session, tick_id: int, records: TickSegmentRecords
) -> None:
    """Record an applied tick's (segment, arm) pairs: one row, an array per column."""
    connection = session.connection()
    mark = param_mark(connection)
    connection.exec_driver_sql(
        f"INSERT INTO tick_segment_windows (tick_id, {', '.join(_TICK_SEGMENT_COLUMNS)}) "
        f"VALUES ({', '.join([mark] * (len(_TICK_SEGMENT_COLUMNS) + 1))})",
        (
            int(tick_id),
            pack_ints(records.segments),
            pack_ints(records.arm_ids),
            *(pack_floats(getattr(records, name)) for name in _TICK_SEGMENT_COLUMNS[2:]),
        ),
    )


def tick_segment_records(
    session: Session, tick_ids: Sequence[int]
) -> dict[int, TickSegmentRecords]:
    """The (segment, arm) records of these ticks, by tick id (ticks that were not applied,
    or of an unsegmented experiment, have none)."""
    if not tick_ids:
        return {}
    ids = ", ".join(str(int(tick_id)) for tick_id in tick_ids)  # ints: nothing to escape
    rows = driver_rows(
        session.connection(),
        f"SELECT tick_id, {', '.join(_TICK_SEGMENT_COLUMNS)} FROM tick_segment_windows "
        f"WHERE tick_id IN ({ids})",
        (),
    )
    return {
        int(tick_id): TickSegmentRecords(
            unpack_ints(segments),
            unpack_ints(arm_ids),
            *(unpack_floats(blob) for blob in floats),
        )
        for tick_id, segments, arm_ids, *floats in rows
    }


def delete_arm_segments(session: Session, arm_ids: Sequence[int]) -> None:
    """Forget these arms' per-segment evidence (a new phase starts every arm afresh)."""
    if arm_ids:
        session.execute(delete(ArmSegmentState).where(ArmSegmentState.arm_id.in_(list(arm_ids))))
