"""The ticket tag is exactly HMAC-SHA256 truncated, whatever the key's length."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from api.tickets import (
    MAX_SEGMENT,
    SEGMENTED_TICKET_LENGTH,
    SEGMENTED_VERSION,
    TicketSigner,
    key_before,
)


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


def test_segmented_tickets_carry_the_segment_in_one_spelling() -> None:
    """Version 3: 42 bytes, 56 characters, the 24-bit segment signed; version 2 tickets
    stay verifiable (segment 0)."""
    signer = TicketSigner("secret")
    for segment in (0, 1, 65_535, 65_536, MAX_SEGMENT):
        ticket = signer.issue(7, 9, "target", now=1_700_000_000, bucket=3, segment=segment)
        assert len(ticket) == SEGMENTED_TICKET_LENGTH == 56 and "=" not in ticket
        claims = signer.verify(ticket)
        assert claims is not None
        assert (claims.segment, claims.bucket, claims.arm_id) == (segment, 3, 9)
        raw = bytearray(base64.urlsafe_b64decode(ticket))
        assert raw[0] == SEGMENTED_VERSION
        raw[25] ^= 1  # another segment under the same tag
        assert signer.verify(base64.urlsafe_b64encode(bytes(raw)).decode()) is None
        assert signer.verify(base64.b64encode(base64.urlsafe_b64decode(ticket)).decode()) in (
            None,
            claims,  # the same string when no byte maps to + or /
        )
    old = signer.issue(7, 9, "target", now=1_700_000_000)
    assert len(old) == 52
    claims = signer.verify(old)
    assert claims is not None and claims.segment == 0
    # A version 2 payload under a version 3 length (and the reverse) is refused.
    payload = base64.urlsafe_b64decode(old)[:23]
    assert (
        signer.verify(base64.urlsafe_b64encode(payload + b"\x00\x00\x00" + b"t" * 16).decode())
        is None
    )


def test_credit_keys_of_both_versions_sort_by_issue_time_within_their_version() -> None:
    signer = TicketSigner("secret")
    early = signer.verify(signer.issue(1, 2, "target", now=1_000, segment=4))
    late = signer.verify(signer.issue(1, 2, "target", now=2_000, segment=4))
    old = signer.verify(signer.issue(1, 2, "target", now=1_500))
    assert early is not None and late is not None and old is not None
    assert bytes([3]) <= early.key < key_before(1_500, 3) <= late.key
    assert old.key < key_before(1_501) and old.key < bytes([3])


def test_only_the_one_spelling_verifies() -> None:
    """Any other character at any position (the standard alphabet's "+" and "/", padding,
    whitespace, non-ASCII, other punctuation) is refused; a genuine ticket's own
    characters verify."""
    signer = TicketSigner("secret")
    base64url = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    others = "+/= \n\t.\x00é\u00a0~*%"
    for ticket in (
        signer.issue(7, 9, "target", now=1_700_000_000, bucket=3),
        signer.issue(7, 9, "target", now=1_700_000_000, bucket=3, segment=70_000),
    ):
        assert set(ticket) <= base64url and signer.verify(ticket) is not None
        for position in range(len(ticket)):
            for other in others:
                spelled = ticket[:position] + other + ticket[position + 1 :]
                assert signer.verify(spelled) is None, spelled
        assert signer.verify(ticket + "=") is None
        assert signer.verify(ticket[:-1]) is None
        assert signer.verify(" " + ticket[1:]) is None
