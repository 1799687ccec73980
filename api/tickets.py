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

    def _tag(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:_TAG_BYTES]

    def issue(self, experiment_id: int, arm_id: int, group: str, now: float | None = None) -> str:
        issued = int(time.time() if now is None else now) & 0xFFFFFFFF
        payload = _LAYOUT.pack(experiment_id, arm_id, GROUP_CODES[group], issued)
        return base64.urlsafe_b64encode(payload + self._tag(payload)).rstrip(b"=").decode("ascii")

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
