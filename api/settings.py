"""Settings, read once from ``RANKTUNE_*`` environment variables."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every setting of a ranktune server; each is the env var ``RANKTUNE_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="RANKTUNE_", extra="ignore")

    database_url: str = Field(
        "sqlite:///./ranktune.db",
        description="SQLAlchemy URL: sqlite:///path.db or postgresql+psycopg://user@host/db",
    )
    admin_token: SecretStr | None = Field(
        None, description="bearer token for admin calls; `serve` generates one if unset"
    )
    host: str = "127.0.0.1"
    port: int = 8000
    tick_interval_s: float = Field(
        10.0, gt=0, description="default update_interval_s of new experiments"
    )
    scheduler_enabled: bool = Field(
        True, description="run ticks (and evolution steps) on this replica's scheduler"
    )
    scheduler_poll_s: float = Field(
        1.0, gt=0, description="how often the scheduler looks for due ticks"
    )
    snapshot_refresh_s: float = Field(
        0.25, gt=0, description="how often a replica reloads posteriors changed elsewhere"
    )
    exposure_flush_s: float = Field(
        0.5, gt=0, description="how often server-counted exposures are written (<= 1 s)"
    )
    maintenance_interval_s: float = Field(
        60.0,
        gt=0,
        description="how often the scheduler forgets expired tickets' counts and drops "
        "pending counts of stopped experiments",
    )
    heavy_reads: int = Field(
        2,
        gt=0,
        description="admin plots, stats and tick histories served at once per replica; "
        "more wait heavy_read_wait_s for a turn, then get 503 with Retry-After",
    )
    heavy_read_wait_s: float = Field(
        2.0, ge=0, description="how long a heavy admin read waits for a turn before its 503"
    )
    max_body_bytes: int = Field(2_000_000, gt=0, description="larger request bodies get 413")
    max_batch_events: int = Field(1000, gt=0, description="larger event batches get 413")
    max_events_body_bytes: int = Field(
        512_000,
        gt=0,
        description="larger POST /v1/events bodies get 413 (a full batch of the largest "
        "legitimate events is under 300 kB; the bound keeps validation cheap)",
    )
    ticket_secret: SecretStr | None = Field(
        None,
        description="key that signs tickets; by default one is generated and kept in the "
        "database, so replicas sharing the database share it",
    )
    sqlite_synchronous: str = Field(
        "FULL", description="SQLite synchronous pragma; FULL makes every commit durable"
    )
