"""Migration 0026 (the packed columns stored uncompressed on PostgreSQL), both ways: every
packed column's storage is EXTERNAL after it and EXTENDED (PostgreSQL's default for bytea)
before; SQLite has nothing to change. A segmented experiment keeps ticking throughout."""

from __future__ import annotations

from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from api.app import create_app
from api.db import migrations_config
from tests.api.helpers import create, tick
from tests.conftest import settings_for

PACKED = {
    "pending_batches": ("arm_ids", "kind_codes", "buckets", "segments", "counts"),
    "arm_segment_states": ("alphas", "betas", "exposures", "target_events"),
    "tick_segment_windows": (
        "segments",
        "arm_ids",
        "exposures",
        "target_events",
        "alpha_increments",
        "beta_increments",
        "alphas_after",
        "betas_after",
    ),
    "metric_count_batches": ("arm_ids", "buckets", "segments", "counts"),
}


def storage(database_url: str) -> dict[tuple[str, str], str]:
    """(table, column) -> pg_attribute.attstorage of every packed column."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT c.relname, a.attname, a.attstorage FROM pg_attribute a "
                    "JOIN pg_class c ON c.oid = a.attrelid "
                    "WHERE c.relname = ANY(:tables) AND a.attnum > 0 AND NOT a.attisdropped"
                ),
                {"tables": list(PACKED)},
            ).all()
    finally:
        engine.dispose()
    return {(table, column): kind for table, column, kind in rows}


def test_packed_columns_uncompressed_both_ways(database_url: str) -> None:
    postgres = database_url.startswith("postgresql")
    wanted = [(table, column) for table, columns in PACKED.items() for column in columns]
    if postgres:
        assert {key: storage(database_url)[key] for key in wanted} == dict.fromkeys(wanted, "e")
    config = migrations_config(database_url)
    command.downgrade(config, "0025")
    if postgres:
        assert {key: storage(database_url)[key] for key in wanted} == dict.fromkeys(wanted, "x")
    command.upgrade(config, "head")
    if postgres:
        assert {key: storage(database_url)[key] for key in wanted} == dict.fromkeys(wanted, "e")
    with TestClient(create_app(settings_for(database_url))) as client:
        create(client, segments={"max_segments": 3})
        assert tick(client)["applied"] in (True, False)
