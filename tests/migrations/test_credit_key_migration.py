"""Migration 0014 rewrites the stored credit keys into the new order (bucket and phase
after the serial), so a ticket issued before the upgrade keeps its count; downgrade
rewrites them back. Checked on byte strings containing zero bytes, on both stores."""

from __future__ import annotations

import os

from alembic import command
from sqlalchemy import create_engine, text

from api.db import migrations_config
from api.tickets import TicketSigner, credit_key


def test_stored_credit_keys_are_rewritten_both_ways(database_url: str) -> None:
    config = migrations_config(database_url)
    command.downgrade(config, "0013")
    signer = TicketSigner("migration-test-key-" + "x" * 20)
    claims = signer.verify(signer.issue(7, 3, "target", bucket=42, phase=2))
    assert claims is not None
    payload = claims.key[:14] + claims.key[20:23] + claims.key[14:20]  # the old order
    assert credit_key(payload) == claims.key
    old_keys = [payload + b"contact", os.urandom(23) + b"view"]
    engine = create_engine(database_url)
    with engine.begin() as connection:
        for number, key in enumerate(old_keys):
            connection.execute(
                text("INSERT INTO ticket_credits (key, count) VALUES (:k, :c)"),
                {"k": key, "c": number + 1},
            )
    command.upgrade(config, "0014")
    with engine.connect() as connection:
        stored = dict(connection.execute(text("SELECT key, count FROM ticket_credits")).all())
    assert {bytes(k): c for k, c in stored.items()} == {
        credit_key(key[:23]) + key[23:]: number + 1 for number, key in enumerate(old_keys)
    }
    assert claims.key + b"contact" in {bytes(k) for k in stored}
    command.downgrade(config, "0013")
    with engine.connect() as connection:
        back = dict(connection.execute(text("SELECT key, count FROM ticket_credits")).all())
    assert {bytes(k): c for k, c in back.items()} == {
        key: number + 1 for number, key in enumerate(old_keys)
    }
    command.upgrade(config, "head")
    engine.dispose()
