"""Pending counts as packed batches (``pending_batches``, migration 0025): packing and
summing, no queries (``api.repositories`` reads, inserts and deletes the rows).

A batch is what one transaction added to one experiment's counts waiting for a tick: per
key (arm, group, type, reason, report bucket, segment) a total, stored as parallel integer
arrays (``api.db.pack_ints``: each in the narrowest integer type that holds it), the
(group, type, reason) triples coded by their index in the batch's own vocabulary
(``kinds``: the triples it uses, sorted, stored as JSON). A batch holds each of its keys
once, in key order; several batches may hold the same key, and the reader sums them
(:func:`sum_batches`). The event writer inserts one batch per experiment per transaction;
a tick deletes the batches it read and re-inserts what it did not consume as one batch.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from api.db import pack_ints, packed_lengths, unpack_joined_ints
from api.enums import Group
from api.limits import CREDITED

Kind = tuple[str, str, str]  # (group, type, reason)
Ints = npt.NDArray[np.int64]


class PendingRow(NamedTuple):
    """One key of an experiment's pending counts and its total."""

    arm_id: int
    group: str
    type: str
    reason: str
    bucket: int
    count: int  # type: ignore[assignment]  # shadows tuple.count(); the column's name
    segment: int = 0  # the segment's index (0 when the experiment is not segmented)


# A batch as stored, in the column order of BATCH_COLUMNS after experiment_id.
BatchValues = tuple[int, str, bytes, bytes, bytes, bytes, bytes]
BATCH_COLUMNS = (
    "experiment_id",
    "reference_exposures",
    "kinds",
    "arm_ids",
    "kind_codes",
    "buckets",
    "segments",
    "counts",
)


def pack_batch(rows: Sequence[PendingRow]) -> BatchValues:
    """The stored values of a batch of ``rows`` (each key once): see :func:`pack_columns`."""
    kinds = sorted({(row[1], row[2], row[3]) for row in rows})
    code = {kind: index for index, kind in enumerate(kinds)}
    # Columns: arm, kind code, bucket, segment, count.
    table = np.array(
        [(row[0], code[row[1], row[2], row[3]], row[4], row[6], row[5]) for row in rows],
        dtype=np.int64,
    ).reshape(-1, 5)
    return pack_columns(kinds, *(table[:, column] for column in range(5)))


def pack_columns(
    kinds: Sequence[Kind],
    arm_ids: Ints,
    kind_codes: Ints,
    buckets: Ints,
    segments: Ints,
    counts: Ints,
) -> BatchValues:
    """The stored values of a batch (each key once; ``kind_codes`` index ``kinds``): the
    credited reference-group exposures, the vocabulary sorted as JSON, the packed arrays in
    key order."""
    order = sorted(range(len(kinds)), key=kinds.__getitem__)
    remap = np.empty(len(kinds), dtype=np.int64)
    remap[order] = np.arange(len(kinds), dtype=np.int64)
    vocabulary = [tuple(kinds[index]) for index in order]
    codes = remap[kind_codes] if len(kinds) else kind_codes
    key_order = np.lexsort((segments, buckets, codes, arm_ids))
    reference = (Group.REFERENCE.value, "exposure", CREDITED)
    referenced = (
        int(counts[codes == vocabulary.index(reference)].sum()) if reference in vocabulary else 0
    )
    return (
        referenced,
        json.dumps(vocabulary, separators=(",", ":")),
        pack_ints(arm_ids[key_order]),
        pack_ints(codes[key_order]),
        pack_ints(buckets[key_order]),
        pack_ints(segments[key_order]),
        pack_ints(counts[key_order]),
    )


@dataclass(frozen=True)
class PendingColumns:
    """Pending counts summed by key, as parallel arrays in key order (arm, group, type,
    reason, bucket, segment): ``kinds[kind_codes[i]]`` is the i-th key's (group, type,
    reason). ``repositories.PendingWindow.of_columns`` makes them a tick's window (and its
    ``rows()`` gives them back as :class:`PendingRow` tuples)."""

    kinds: list[Kind]
    arm_ids: Ints
    kind_codes: Ints
    buckets: Ints
    segments: Ints
    counts: Ints


_EMPTY: Ints = np.zeros(0, dtype=np.int64)


def sum_batches(batches: Iterable[Sequence[Any]]) -> PendingColumns:
    """The batches' counts summed by key. Each batch: its ``kinds`` (JSON text, or the
    list a driver already decoded) and its five packed arrays, in the column order of
    :data:`BATCH_COLUMNS`. NumPy throughout, and no per-batch work beyond collecting its
    bytes (one vocabulary decoded per distinct spelling): a dense window's tens of
    thousands of keys, or thousands of small batches, cost milliseconds."""
    vocabularies: dict[str, int] = {}  # a vocabulary's spelling -> its index
    vocabulary_of: list[int] = []  # per batch
    blobs: list[list[bytes]] = [[], [], [], [], []]
    for kinds_value, *arrays in batches:
        spelling = (
            kinds_value
            if isinstance(kinds_value, str)
            else json.dumps(kinds_value, separators=(",", ":"))
        )
        vocabulary_of.append(vocabularies.setdefault(spelling, len(vocabularies)))
        for column, blob in zip(blobs, arrays, strict=True):
            column.append(bytes(blob))
    if not vocabulary_of:
        return PendingColumns([], _EMPTY, _EMPTY, _EMPTY, _EMPTY, _EMPTY)
    decoded = [
        [(str(g), str(t), str(r)) for g, t, r in json.loads(spelling)] for spelling in vocabularies
    ]
    every_kind = sorted({kind for kinds in decoded for kind in kinds})
    index = {kind: position for position, kind in enumerate(every_kind)}
    # remap[v, c]: the index in every_kind of code c of vocabulary v (sorted -> sorted).
    remap = np.zeros((len(decoded), max(len(kinds) for kinds in decoded) or 1), dtype=np.int64)
    for row, kinds in enumerate(decoded):
        remap[row, : len(kinds)] = [index[kind] for kind in kinds]
    arm_ids, codes, buckets, segments, counts = (unpack_joined_ints(column) for column in blobs)
    lengths = packed_lengths(blobs[4])
    if len(vocabularies) == 1:
        codes = remap[0][codes]
    else:
        batch_vocabulary = np.repeat(np.array(vocabulary_of, dtype=np.int64), lengths)
        codes = remap[batch_vocabulary, codes]
    if len(lengths) > 1:
        arm_ids, codes, buckets, segments, counts = _summed(
            arm_ids, codes, buckets, segments, counts, len(every_kind)
        )
    # A single batch is already in key order, each key once (pack_batch).
    return PendingColumns(every_kind, arm_ids, codes, buckets, segments, counts)


def _summed(
    arm_ids: Ints, codes: Ints, buckets: Ints, segments: Ints, counts: Ints, kinds: int
) -> tuple[Ints, Ints, Ints, Ints, Ints]:
    """The entries in key order, one total per key (int64 sums, exact)."""
    if not len(counts):
        return arm_ids, codes, buckets, segments, counts
    low = [int(values.min()) for values in (arm_ids, buckets, segments)]
    spans = [
        int(values.max()) - lowest + 1
        for values, lowest in zip((arm_ids, buckets, segments), low, strict=True)
    ]
    if spans[0] * kinds * spans[1] * spans[2] < 2**62:
        # One int64 per key, ordered as the key (arm, kind, bucket, segment): one sort.
        key = ((arm_ids - low[0]) * kinds + codes) * spans[1] + (buckets - low[1])
        key = key * spans[2] + (segments - low[2])
        order = np.argsort(key, kind="stable")
        key = key[order]
        new_key = np.ones(len(key), dtype=bool)
        new_key[1:] = key[1:] != key[:-1]
    else:  # lexsort's last key is the first
        order = np.lexsort((segments, buckets, codes, arm_ids))
        columns = [values[order] for values in (arm_ids, codes, buckets, segments)]
        new_key = np.ones(len(order), dtype=bool)
        new_key[1:] = np.any([c[1:] != c[:-1] for c in columns], axis=0)
    starts = np.flatnonzero(new_key)
    first = order[starts]
    return (
        arm_ids[first],
        codes[first],
        buckets[first],
        segments[first],
        np.add.reduceat(counts[order], starts),
    )
