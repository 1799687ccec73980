"""The ticket tag is exactly HMAC-SHA256 truncated, whatever the key's length."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from api.tickets import TicketSigner


@pytest.mark.parametrize("key", ["", "k", "x" * 43, "y" * 64, "z" * 65, "é" * 100])
def test_tag_is_truncated_hmac_sha256(key: str) -> None:
    signer = TicketSigner(key)
    for payload in (b"", b"\x00" * 13, bytes(range(200))):
        expected = hmac.new(key.encode("utf-8"), payload, hashlib.sha256).digest()[:16]
        assert signer._tag(payload) == expected


def test_ticket_round_trip_and_foreign_key_rejected() -> None:
    ticket = TicketSigner("secret").issue(7, 9, "reference", now=1_700_000_000)
    claims = TicketSigner("secret").verify(ticket)
    assert claims is not None and (claims.experiment_id, claims.arm_id) == (7, 9)
    assert claims.group == "reference" and claims.issued_at == 1_700_000_000
    assert TicketSigner("other").verify(ticket) is None
