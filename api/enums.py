"""The closed vocabularies of experiments, arms, groups and the expert queue.

``StrEnum`` members are strings: they are stored, compared and serialised as their values
("running", "active", ...), so the database and the JSON contract are unchanged, while the
code names each state once.
"""

from __future__ import annotations

from enum import StrEnum


class ExperimentStatus(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"
    # Stopped and put away: history readable, never served a bandit arm, ticked or evolved.
    ARCHIVED = "archived"


# Statuses in which an experiment's arms and settings no longer change.
CLOSED_STATUSES = frozenset({ExperimentStatus.STOPPED, ExperimentStatus.ARCHIVED})


class ArmStatus(StrEnum):
    ACTIVE = "active"
    RETIRED = "retired"


class Mode(StrEnum):
    """Request mode draws an arm per request; window mode pins one per tick window."""

    REQUEST = "request"
    WINDOW = "window"


class ExposureSource(StrEnum):
    SERVER = "server"  # every configuration handed out counts
    CLIENT = "client"  # only the ``exposure`` events clients report


class Group(StrEnum):
    TARGET = "target"
    REFERENCE = "reference"
    # Served while the experiment was not running: the reference configuration, never counted.
    INACTIVE = "inactive"


class ExpertStatus(StrEnum):
    WAITING = "waiting"
    CONSUMED = "consumed"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"


class MetricRole(StrEnum):
    """What a metric of the report is for: the bandit optimises the decision metric (the
    experiment's ``target_event``); secondary metrics are reported; guardrails are protected
    (an arm that degrades one beyond its ``max_loss`` is retired)."""

    DECISION = "decision"
    SECONDARY = "secondary"
    GUARDRAIL = "guardrail"


class Direction(StrEnum):
    """Which way a metric is better."""

    INCREASE = "increase"
    DECREASE = "decrease"


class PhaseTrigger(StrEnum):
    """What started a phase (``phases.trigger``)."""

    CREATE = "create"  # the experiment's first phase
    PROMOTE = "promote"  # an arm was promoted to reference
    SETTINGS = "settings"  # an edit changed what the comparison means (PATCH)


class NotificationKind(StrEnum):
    """What admins are notified of (``notifications``; webhooks choose among them)."""

    GUARDRAIL_TRIPPED = "guardrail_tripped"  # an arm retired for harming a guardrail
    CIRCUIT_BREAKER = "circuit_breaker"  # the experiment paused: the bandit group is harmful
    SRM = "srm"  # sample ratio mismatch detected
    WINNER = "winner"  # an arm passed the winner thresholds for the sustained period
    PHASE_CHANGED = "phase_changed"  # a new reference configuration: a new phase
    PING = "ping"  # a test notification sent by an admin


class DeliveryStatus(StrEnum):
    """Where one notification's delivery to one webhook stands (``webhook_deliveries``)."""

    PENDING = "pending"  # waiting for its first or next attempt
    DELIVERED = "delivered"  # the receiver answered 2xx
    FAILED = "failed"  # a permanent failure (4xx but 429, a redirect) or out of attempts
    CANCELLED = "cancelled"  # the webhook was deleted before the delivery succeeded


class Role(StrEnum):
    """What a token (and a dashboard sign-in) may do: admins read and steer, viewers read
    (the admin API's GET routes but webhooks and tokens, and the dashboard without its
    forms), clients call the client routes (assignment, events, snapshot) when
    RANKTUNE_CLIENT_KEY_REQUIRED is on (docs/security.md)."""

    ADMIN = "admin"
    VIEWER = "viewer"
    CLIENT = "client"
