"""The packed column format (api.db, migration 0027): a type byte, then the elements in the
narrowest type that holds them; checked against bytes written out by hand."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from api.db import (
    pack_floats,
    pack_ints,
    packed_lengths,
    unpack_floats,
    unpack_ints,
    unpack_joined_ints,
)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], b"1"),
        ([0, 127, -128], b"1" + struct.pack("<3b", 0, 127, -128)),
        ([128], b"2" + struct.pack("<h", 128)),
        ([-32769, 5], b"4" + struct.pack("<2i", -32769, 5)),
        ([2**31], b"8" + struct.pack("<q", 2**31)),
        ([-(2**63), 2**63 - 1], b"8" + struct.pack("<2q", -(2**63), 2**63 - 1)),
    ],
)
def test_integers_take_the_narrowest_type_that_holds_them(
    values: list[int], expected: bytes
) -> None:
    assert pack_ints(np.array(values, dtype=np.int64)) == expected
    assert unpack_ints(expected).tolist() == values
    assert unpack_ints(expected).dtype == np.int64


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([3.0, 0.0, 250.0], b"2" + struct.pack("<3h", 3, 0, 250)),
        ([-1.0, 2.0**40], b"8" + struct.pack("<2q", -1, 2**40)),
        ([1.5, 2.0], b"f" + struct.pack("<2d", 1.5, 2.0)),
        ([2.0**53 + 2], b"f" + struct.pack("<d", 2.0**53 + 2)),
        ([float("nan")], b"f" + struct.pack("<d", float("nan"))),
        ([float("inf"), 1.0], b"f" + struct.pack("<2d", float("inf"), 1.0)),
        ([0.1 + 0.2], b"f" + struct.pack("<d", 0.1 + 0.2)),
    ],
)
def test_whole_floats_are_packed_as_integers_and_the_rest_exactly(
    values: list[float], expected: bytes
) -> None:
    assert pack_floats(values) == expected
    unpacked = unpack_floats(expected)
    assert unpacked.dtype == np.float64
    np.testing.assert_array_equal(unpacked, values)


def test_floats_come_back_bit_for_bit() -> None:
    rng = np.random.default_rng(7)
    values = np.concatenate(
        [rng.random(1000) * 1e6, rng.integers(-(10**9), 10**9, 1000).astype(float), [-0.0]]
    )
    unpacked = unpack_floats(pack_floats(values))
    # -0.0 is whole and comes back as 0.0, equal to it; every other value is identical.
    np.testing.assert_array_equal(unpacked, values)
    assert unpacked[:-1].tobytes() == values[:-1].tobytes()


def test_a_value_that_is_not_a_packed_column_is_refused() -> None:
    for blob in (b"", b"x\x00", b"2\x00", b"8" + bytes(7)):
        with pytest.raises(ValueError, match="not a packed column"):
            unpack_floats(blob)
    with pytest.raises(ValueError, match="holds floats"):
        unpack_ints(pack_floats([0.5]))
    with pytest.raises(ValueError, match="wrong"):
        packed_lengths([b"1\x00", b"2\x00"])
    with pytest.raises(ValueError, match="holds floats"):
        unpack_joined_ints([pack_ints([1]), pack_floats([0.5])])


def test_joined_columns_unpack_as_each_one_concatenated() -> None:
    rng = np.random.default_rng(3)
    arrays = [
        rng.integers(-(2 ** (bits - 1)), 2 ** (bits - 1), size, dtype=np.int64)
        for bits, size in zip(
            rng.choice([4, 8, 12, 16, 24, 40, 63], 300), rng.integers(0, 20, 300), strict=True
        )
    ]
    blobs = [pack_ints(values) for values in arrays]
    assert {blob[:1] for blob in blobs} == {b"1", b"2", b"4", b"8"}
    joined = unpack_joined_ints(blobs)
    assert joined.dtype == np.int64
    np.testing.assert_array_equal(joined, np.concatenate(arrays))
    assert packed_lengths(blobs).tolist() == [len(values) for values in arrays]
    np.testing.assert_array_equal(unpack_joined_ints(blobs[:1]), arrays[0])
