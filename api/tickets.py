"""Tickets: opaque, signed receipts of an assignment that clients attach to their events.

A ticket binds (experiment, arm, group) to the answer that produced it, so events are
attributed to the configuration that was really served; an HMAC-SHA256 tag (truncated to
128 bits) makes forged or foreign tickets detectable. Layout before base64url:
``>IIBI`` = experiment id, arm id, group code, issue time (unix seconds), then the tag.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import struct
import time
from dataclasses import dataclass

_LAYOUT = struct.Struct(">IIBI")
_TAG_BYTES = 16
_BLOCK = hashlib.sha256().block_size  # 64 bytes
_MAX_REMEMBERED = 10_000
GROUPS = ("target", "reference", "inactive")
GROUP_CODES = {name: code for code, name in enumerate(GROUPS)}


@dataclass(frozen=True)
class TicketClaims:
    experiment_id: int
    arm_id: int
    group: str
    issued_at: int


def new_secret() -> str:
    return secrets.token_urlsafe(32)


class TicketSigner:
    def __init__(self, key: str) -> None:
        self._key = key.encode("utf-8")
        block = self._key if len(self._key) <= _BLOCK else hashlib.sha256(self._key).digest()
        block = block.ljust(_BLOCK, b"\x00")
        self._inner = hashlib.sha256(bytes(byte ^ 0x36 for byte in block))
        self._outer = hashlib.sha256(bytes(byte ^ 0x5C for byte in block))
        self._last_issued: dict[tuple[int, int, str], tuple[int, str]] = {}

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

    def issue(self, experiment_id: int, arm_id: int, group: str, now: float | None = None) -> str:
        issued = int(time.time() if now is None else now) & 0xFFFFFFFF
        # A ticket is a pure function of (experiment, arm, group, second): the last one of
        # each triple is kept and reused within its second, which spares almost every
        # assignment the MAC and the encoding. Bounded by the arms served; reset if huge.
        key = (experiment_id, arm_id, group)
        last = self._last_issued.get(key)
        if last is not None and last[0] == issued:
            return last[1]
        payload = _LAYOUT.pack(experiment_id, arm_id, GROUP_CODES[group], issued)
        ticket = base64.urlsafe_b64encode(payload + self._tag(payload)).rstrip(b"=").decode("ascii")
        if len(self._last_issued) >= _MAX_REMEMBERED:
            self._last_issued = {}
        self._last_issued[key] = (issued, ticket)
        return ticket

    def verify(self, ticket: str) -> TicketClaims | None:
        """The claims of a genuine ticket, or None for anything forged, foreign or malformed."""
        try:
            raw = base64.urlsafe_b64decode(ticket + "=" * (-len(ticket) % 4))
        except (binascii.Error, ValueError):
            return None
        if len(raw) != _LAYOUT.size + _TAG_BYTES:
            return None
        payload, tag = raw[: _LAYOUT.size], raw[_LAYOUT.size :]
        if not hmac.compare_digest(tag, self._tag(payload)):
            return None
        experiment_id, arm_id, code, issued = _LAYOUT.unpack(payload)
        if code >= len(GROUPS):
            return None
        return TicketClaims(experiment_id, arm_id, GROUPS[code], issued)
