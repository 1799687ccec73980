"""Settings, read once from ``RANKTUNE_*`` environment variables."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from api.retention import MIN_RETENTION_DAYS, retention_shortfall

# 16 characters of even lower-case letters and digits are more than 80 bits; the bearer token
# is the only thing between the network and the admin API.
MIN_ADMIN_TOKEN_LENGTH = 16


class Settings(BaseSettings):
    """Every setting of a ranktune server; each is the env var ``RANKTUNE_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="RANKTUNE_", extra="ignore")

    database_url: str = Field(
        "sqlite:///./ranktune.db",
        description="SQLAlchemy URL: sqlite:///path.db or postgresql+psycopg://user@host/db",
    )
    admin_token: SecretStr | None = Field(
        None,
        description=f"bearer token for admin calls, at least {MIN_ADMIN_TOKEN_LENGTH} "
        "printable ASCII characters; `serve` generates one if unset",
    )
    client_key_required: bool = Field(
        False,
        description="the client routes (assignment, events, snapshot) require a client (or "
        "admin) token in `Authorization: Bearer <token>`; create one with `ranktune tokens "
        "create --role client`",
    )
    cors_origins: str = Field(
        "",
        description="comma-separated origins (e.g. `https://shop.example.com`) whose web "
        "pages may call the API from the browser (CORS); empty: none",
    )
    opentelemetry: bool = Field(
        False,
        description="let FastAPI export OpenTelemetry traces, metrics and logs of every "
        "request to the globally configured OpenTelemetry providers (install and configure "
        "the OpenTelemetry SDK yourself); off, every request skips FastAPI's check for "
        "them, which costs each assignment about a tenth of its time. ranktune's own "
        "Prometheus metrics (/metrics) do not depend on it",
    )
    host: str = "127.0.0.1"
    port: int = 8000
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        description="a request's headers must arrive within this many seconds of the "
        "connection (or of the request's first byte on a kept-alive connection); else 408 "
        "and the connection is closed. An idle new connection is closed after it too",
    )
    body_timeout_s: float = Field(
        20.0,
        gt=0,
        description="a request's body must arrive within this many seconds of its headers; "
        "else 408 and the connection is closed",
    )
    max_header_bytes: int = Field(
        65_536,
        ge=1024,
        description="request line and headers larger than this get 431 and the connection "
        "is closed (checked as they arrive; at most one read of up to 256 KiB goes uncounted)",
    )
    keep_alive_timeout_s: int = Field(
        5, ge=1, description="an idle kept-alive connection is closed after this many seconds"
    )
    max_connections: int = Field(
        1000,
        ge=1,
        description="connections served at once; a request on any further connection gets "
        "503 and the connection is closed",
    )
    shutdown_timeout_s: int = Field(
        25,
        ge=1,
        description="on SIGTERM, requests in progress get this many seconds to finish "
        "(a body still arriving gets half of it); then the rest is cancelled, exposures and "
        "queued events are written, and the process exits",
    )
    tick_interval_s: float = Field(
        10.0, gt=0, description="default update_interval_s of new experiments"
    )
    scheduler_enabled: bool = Field(
        True,
        description="run ticks (and evolution steps) on this replica's scheduler, and "
        "deliver webhooks",
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
        description="how often the scheduler forgets expired tickets' counts, drops "
        "pending counts of stopped experiments and prunes what is past the retention window",
    )
    event_retention_days: float = Field(
        7.0,
        le=3650,
        description="how long stored events (and with them the event ids that make retries "
        "idempotent), finished webhook deliveries and their notifications, and segmented "
        "ticks' per-segment records (each experiment's latest 20 kept) are kept; at "
        f"least {MIN_RETENTION_DAYS:g} days, and an experiment's attribution window may be at "
        "most this minus an hour (api.retention)",
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
    event_writers: int | None = Field(
        None,
        ge=1,
        le=16,
        description="threads (and connections) committing events; default 1 on SQLite, 2 on "
        "PostgreSQL",
    )
    webhook_timeout_s: float = Field(
        5.0,
        gt=0,
        le=60,
        description="each webhook POST gives up after this many seconds without progress "
        "(connecting, or waiting for the answer); a timeout is retried",
    )
    webhook_max_attempts: int = Field(
        8, ge=1, le=100, description="attempts per delivery before it is marked failed"
    )
    webhook_backoff_s: float = Field(
        30.0,
        gt=0,
        description="the wait before the 2nd attempt; each further wait doubles (up to "
        "webhook_max_backoff_s), and each is drawn between half of it and all of it (jitter)",
    )
    webhook_max_backoff_s: float = Field(
        3600.0, gt=0, description="the longest wait between two attempts of a delivery"
    )
    webhook_poll_s: float = Field(
        1.0, gt=0, description="how often the deliverer looks for due webhook deliveries"
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
    # Operations (docs/operations.md).
    log_format: Literal["text", "json"] = Field(
        "text",
        description="`text` lines, or `json`: one object per line (time, level, logger, "
        "message, request_id, extra fields); `ranktune serve --log-format` overrides it",
    )
    metrics_token: SecretStr | None = Field(
        None,
        description="if set, GET /metrics needs `Authorization: Bearer <this token>`; unset, "
        "/metrics is open (scrape it on an internal network)",
    )

    @property
    def cors_origin_list(self) -> list[str]:
        return [origin.strip() for origin in self.cors_origins.split(",") if origin.strip()]

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, origins: str) -> str:
        """Each origin is scheme://host[:port], or ``*`` (any origin), as browsers send it."""
        for origin in (part.strip() for part in origins.split(",")):
            if origin and origin != "*" and not re.fullmatch(r"https?://[^/\s]+", origin):
                raise ValueError(
                    f"{origin!r}: expected origins such as https://shop.example.com (scheme "
                    "and host, no path), separated by commas"
                )
        return origins

    @field_validator("event_retention_days")
    @classmethod
    def _retention_outlasts_retries(cls, days: float) -> float:
        """Refuse a window in which a retry could outlive its original: the event would be
        counted twice (api.retention says how long a retry can still be accepted)."""
        problem = retention_shortfall(days)
        if problem is not None:
            raise ValueError(problem)
        return days

    @field_validator("admin_token")
    @classmethod
    def _strong_admin_token(cls, token: SecretStr | None) -> SecretStr | None:
        """Refuse at start-up what would fail later: an empty token locked every admin out
        (a random one replaced it), a short one can be guessed, and a space or non-ASCII
        character cannot be sent in an ``Authorization`` header. Never echoes the token."""
        if token is None:
            return None
        value = token.get_secret_value()
        if len(value) < MIN_ADMIN_TOKEN_LENGTH:
            length = f"length {len(value)}" if value else "empty"
            raise ValueError(
                f"{length}; expected at least {MIN_ADMIN_TOKEN_LENGTH} characters (or unset "
                "it: `ranktune serve` then generates one and prints it)"
            )
        if not all("!" <= character <= "~" for character in value):
            raise ValueError(
                "expected printable ASCII characters without spaces (it is sent in the "
                "Authorization header)"
            )
        return token
