"""Tickets: opaque, signed receipts of an assignment that clients attach to their events.

A ticket binds (experiment, arm, group) to the one answer that produced it, so events are
attributed to the configuration that was really served and can be bounded by it: every
answer gets its own ticket (a serial number makes it unique), and the event path credits at
most a configured number of events of each type per ticket (``api.services.events``). An
HMAC-SHA256 tag (truncated to 128 bits) makes forged or foreign tickets detectable, and the
issue time lets events outside the experiment's attribution window be refused.

Layout before base64url, 39 bytes: ``>BIIIBBHHI`` = format version (2), issue time (unix
seconds), experiment id, arm id, group code, the unit's report bucket, the experiment's
phase, serial (16 + 32 bits), then the 16-byte tag. The 23 bytes before the tag identify
the ticket (``TicketClaims.key``, with the bucket and phase moved to the end:
:func:`credit_key`), and start with the issue time, so in byte order the expired tickets
of an experiment come first. The bucket lets the report count
events per hashed unit bucket without storing units; the phase keeps events of a previous
phase (before a promotion) out of the current one. 39 bytes are a whole number of base64
quanta, so a ticket is exactly 52 characters of the URL-safe alphabet with no padding, and
every byte string has exactly one spelling: a ticket written another way (``=`` padding,
the standard ``+/`` alphabet) is refused instead of being read as the same claims under
another string.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import itertools
import secrets
import struct
import time
from typing import NamedTuple

from api.enums import Group

VERSION = 2
SEGMENTED_VERSION = 3
VERSIONS = (VERSION, SEGMENTED_VERSION)
_LAYOUT = struct.Struct(">BIIIBBHHI")
_SEGMENTED_LAYOUT = struct.Struct(">BIIIBBHHIBH")
_TAG_BYTES = 16
TICKET_LENGTH = (_LAYOUT.size + _TAG_BYTES) * 4 // 3  # 52 characters
SEGMENTED_TICKET_LENGTH = (_SEGMENTED_LAYOUT.size + _TAG_BYTES) * 4 // 3  # 56 characters
MAX_SEGMENT = 0xFFFFFF  # a version 3 ticket holds the segment index in 24 bits
MAX_PHASE = 0xFFFF  # a ticket holds the phase in 16 bits
_BLOCK = hashlib.sha256().block_size  # 64 bytes
_a2b_base64 = binascii.a2b_base64
_compare_digest = hmac.compare_digest
GROUPS = tuple(Group)  # in code order: target 0, reference 1, inactive 2
GROUP_CODES: dict[str, int] = {name.value: code for code, name in enumerate(GROUPS)}


class TicketClaims(NamedTuple):
    """What a genuine ticket says (a tuple: built for every event of every request)."""

    experiment_id: int
    arm_id: int
    group: Group
    issued_at: int
    serial: int
    bucket: int = 0
    phase: int = 1
    # The per-ticket credit key: the signed bytes, reordered (credit_key). They start with
    # the version and the issue time, so keys sort by issue time (see key_before).
    key: bytes = b""
    segment: int = 0  # the segment's index (0: the default segment; version 2 tickets)


# The credit key is the signed bytes with the bucket and the phase (bytes 14-16) moved after
# the serial: keys of one second, arm and group then follow the serial, so the writer's
# upserts into ``ticket_credits`` append near one place of the index instead of 64 (one per
# bucket): random insertion cost the writer a quarter of its throughput (migration 0014
# rewrote the keys stored before).
_BUCKET_AND_PHASE = slice(14, 17)


def credit_key(payload: bytes) -> bytes:
    """The per-ticket credit key of a ticket's signed bytes (every byte kept: unique)."""
    return payload[:14] + payload[17:] + payload[_BUCKET_AND_PHASE]


def key_before(issued_at: int, version: int = VERSION) -> bytes:
    """The smallest key of a ticket of ``version`` issued at ``issued_at``: every key of
    that version below it (and at or above ``bytes([version])``) belongs to a ticket
    issued earlier."""
    return struct.pack(">BI", version, max(issued_at, 0) & 0xFFFFFFFF)


def new_secret() -> str:
    return secrets.token_urlsafe(32)


class TicketSigner:
    def __init__(self, key: str) -> None:
        self._key = key.encode("utf-8")
        block = self._key if len(self._key) <= _BLOCK else hashlib.sha256(self._key).digest()
        block = block.ljust(_BLOCK, b"\x00")
        self._inner = hashlib.sha256(bytes(byte ^ 0x36 for byte in block))
        self._outer = hashlib.sha256(bytes(byte ^ 0x5C for byte in block))
        # Serials: a random 16-bit prefix per signer (per replica process) above a counter,
        # so two replicas practically never issue the same ticket within one second.
        # next() on itertools.count is atomic under the GIL: no lock on the hot path.
        self._prefix = secrets.randbits(16)
        self._serials = itertools.count()

    def _tag(self, payload: bytes) -> bytes:
        """HMAC-SHA256(key, payload) truncated, from the keyed states prepared once (RFC 2104).

        Equal to ``hmac.new(key, payload, sha256).digest()``; copying two prepared SHA-256
        states costs about half of building an HMAC object, which every assignment and
        every event's ticket check pays.
        """
        inner = self._inner.copy()
        inner.update(payload)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()[:_TAG_BYTES]

    def issue(
        self,
        experiment_id: int,
        arm_id: int,
        group: str,
        now: float | None = None,
        *,
        bucket: int = 0,
        phase: int = 1,
        segment: int | None = None,
    ) -> str:
        """A version 2 ticket, or with ``segment`` (a segmented experiment's segment
        index, even 0) a version 3 one."""
        issued = int(time.time() if now is None else now) & 0xFFFFFFFF
        serial = next(self._serials) & 0xFFFFFFFF
        code = GROUP_CODES[group]
        if segment is None:
            payload = _LAYOUT.pack(
                VERSION, issued, experiment_id, arm_id, code, bucket, phase, self._prefix, serial
            )
        else:
            payload = _SEGMENTED_LAYOUT.pack(
                SEGMENTED_VERSION,
                issued,
                experiment_id,
                arm_id,
                code,
                bucket,
                phase,
                self._prefix,
                serial,
                segment >> 16,
                segment & 0xFFFF,
            )
        return base64.urlsafe_b64encode(payload + self._tag(payload)).decode("ascii")

    def verify(self, ticket: str) -> TicketClaims | None:
        """The claims of a genuine ticket, or None for anything forged, foreign or malformed."""
        # Exactly the length and alphabet of the one spelling: no "+", "/" or "=" (the
        # lengths are whole base64 quanta, so there is no padding and no spare bit), and
        # a2b_base64's strict mode refuses any other character of the translated text.
        # Half the cost of checking the alphabet with str.strip and urlsafe_b64decode.
        length = len(ticket)
        if length == TICKET_LENGTH:
            layout, expected = _LAYOUT, VERSION
        elif length == SEGMENTED_TICKET_LENGTH:
            layout, expected = _SEGMENTED_LAYOUT, SEGMENTED_VERSION
        else:
            return None
        if "+" in ticket or "/" in ticket or "=" in ticket:
            return None
        try:
            raw = _a2b_base64(ticket.replace("-", "+").replace("_", "/"), strict_mode=True)
        except (binascii.Error, ValueError):  # not base64url, or not ASCII
            return None
        payload, tag = raw[: layout.size], raw[layout.size :]
        # self._tag(payload), inline: this runs for every ticket of every event batch.
        inner = self._inner.copy()
        inner.update(payload)
        outer = self._outer.copy()
        outer.update(inner.digest())
        if not _compare_digest(tag, outer.digest()[:_TAG_BYTES]):
            return None
        segment = 0
        if expected == VERSION:
            version, issued, experiment_id, arm_id, code, bucket, phase, prefix, serial = (
                _LAYOUT.unpack(payload)
            )
        else:
            (
                version,
                issued,
                experiment_id,
                arm_id,
                code,
                bucket,
                phase,
                prefix,
                serial,
                high,
                low,
            ) = _SEGMENTED_LAYOUT.unpack(payload)
            segment = (high << 16) | low
        if version != expected or code >= len(GROUPS):
            return None
        # tuple.__new__: the named tuple built in C (its generated __new__ costs 3x more).
        return tuple.__new__(
            TicketClaims,
            (
                experiment_id,
                arm_id,
                GROUPS[code],
                issued,
                (prefix << 32) | serial,
                bucket,
                phase,
                payload[:14] + payload[17:] + payload[_BUCKET_AND_PHASE],  # credit_key(payload)
                segment,
            ),
        )
