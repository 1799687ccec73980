"""Request and response bodies (pydantic, snake_case JSON). docs/spec.md fixes the core names."""

from __future__ import annotations

import dataclasses
import math
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StrictBool,
    StringConstraints,
    ValidationInfo,
    WithJsonSchema,
    create_model,
    field_validator,
)

from api.enums import (
    ArmStatus,
    DeliveryStatus,
    Direction,
    ExperimentStatus,
    ExpertStatus,
    ExposureSource,
    MetricRole,
    Mode,
    NotificationKind,
    PhaseTrigger,
)
from arms.origins import Origin
from bandit import DEFAULT_POLICY_PARAMETERS
from bandit.decisions import (
    MAX_MIN_EXPOSURES,
    MAX_WINNER_MIN_LIFT,
    MAX_WINNER_SUSTAIN_S,
    MIN_WINNER_P_BEST,
    DecisionSettings,
)
from bandit.evolution import EvolutionSettings, RetirementReason, ScoreKind

Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
Identifier = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
# An event type's name: what clients report, metrics declare and limits are keyed by.
EVENT_NAME_PATTERN = r"[a-z][a-z0-9_]{0,63}"
EventType = Annotated[str, StringConstraints(pattern=rf"^{EVENT_NAME_PATTERN}$")]
EventId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:/+=-]{1,128}$")]
Number = float | int
EventLimits = Annotated[
    dict[
        Annotated[str, StringConstraints(pattern=rf"^(\*|{EVENT_NAME_PATTERN})$")],
        Annotated[int, Field(ge=1, le=1_000_000)],
    ],
    Field(max_length=64),
]
_JSON_TYPES = {bool: "a boolean", str: "a string", list: "an array", dict: "an object"}


def _config_number(value: Any) -> Number:
    # Only a JSON number: pydantic's lax float|int would turn `true` into 1 and "1.5" into
    # 1.5, and its union errors name the branch ("config.region.float"), not the field.
    if isinstance(value, bool) or not isinstance(value, int | float):
        got = "null" if value is None else _JSON_TYPES.get(type(value), type(value).__name__)
        raise ValueError(f"expected a number, got {got}")
    return value


# A number in a configuration; finiteness and bounds are checked against the space.
ConfigNumber = Annotated[Number, PlainValidator(_config_number), WithJsonSchema({"type": "number"})]
ConfigIn = dict[Annotated[str, StringConstraints(max_length=64)], ConfigNumber]


class ErrorOut(BaseModel):
    """The one shape of every 4xx (and 5xx) answer."""

    error: str = Field(description="the kind: ValidationError, NotFound, Conflict, ...")
    detail: str = Field(description="'<field>: <what was expected>'")
    field: str | None = Field(None, description="the offending field, when there is one")


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for error statuses, all with the ErrorOut body."""
    meanings = {
        400: "malformed request (e.g. a Content-Length that is not a number)",
        401: "no bearer token",
        403: "wrong bearer token",
        404: "no such experiment, arm or route",
        405: "method not allowed on this path",
        409: "the state does not allow it",
        413: "body or batch too large",
        415: "the body is not declared as application/json",
        422: "a field is invalid; `field` names it",
        503: "the server is busy; retry later",
    }
    return {status: {"model": ErrorOut, "description": meanings[status]} for status in statuses}


CLIENT_ERRORS = error_responses(400, 404, 405, 409, 413, 415, 422, 503)
ADMIN_ERRORS = error_responses(400, 401, 403, 404, 405, 409, 413, 415, 422, 503)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ParameterIn(Strict):
    name: Identifier
    type: Literal["float", "int"] = "float"
    low: float
    high: float
    distribution: Literal["uniform", "log_uniform"] = "uniform"
    step: float | None = Field(
        None,
        gt=0,
        description="the precision of generated values: multiples of it (at most high - low; "
        "an integer for an int parameter). Without it, generated floats keep 5 significant "
        "digits of the range (range 2.0: 0.0001), and of the value when log_uniform",
    )

    @field_validator("low", "high", "step")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("expected a finite number")
        return value


class PolicyParams(Strict):
    """The policies' constants (defaults: ``bandit.PolicyParameters``)."""

    epsilon: float = Field(
        DEFAULT_POLICY_PARAMETERS.epsilon,
        ge=0,
        le=1,
        description="egreedy: exploration probability",
    )
    c: float = Field(
        DEFAULT_POLICY_PARAMETERS.c, gt=0, le=1e6, description="edecay: epsilon_t = min(1, c*K/t)"
    )
    ucb_alpha: float = Field(
        DEFAULT_POLICY_PARAMETERS.ucb_alpha, gt=0, le=1e6, description="ucb1: exploration constant"
    )


# The pure layer declares the genetic step's defaults; the request body reads them from here.
DEFAULT_EVOLUTION = EvolutionSettings()
# mix field -> the EvolutionSettings field it sets: the one place where the request body's
# names differ from the pure settings' (every other setting has the same name in both).
MIX_WEIGHTS: dict[str, str] = {
    "random": "random_weight",
    "mutation": "mutation_weight",
    "crossover": "crossover_weight",
}
# The fields of the ``evolution`` object that schedule the step rather than shape it.
SCHEDULE_FIELDS = ("enabled", "evolve_interval_s")


def evolution_field(setting: str) -> str:
    """The path, in a create request, of the field that sets an EvolutionSettings field."""
    mix = {weight: name for name, weight in MIX_WEIGHTS.items()}
    return f"evolution.mix.{mix[setting]}" if setting in mix else f"evolution.{setting}"


def _weight(name: str) -> Any:
    return Field(getattr(DEFAULT_EVOLUTION, MIX_WEIGHTS[name]), ge=0, le=1e6)


class EvolutionMix(Strict):
    """Relative weights of the non-expert additions of a genetic step (all zero: experts only)."""

    random: float = _weight("random")
    mutation: float = _weight("mutation")
    crossover: float = _weight("crossover")


class EvolutionIn(Strict):
    """The genetic step (names as in ``bandit.evolution.EvolutionSettings``,
    whose field defaults these are; the mix weights are ``MIX_WEIGHTS``).

    ``enabled`` turns on the scheduled step every ``evolve_interval_s``; admins can run a
    step on demand either way. ``min_arms`` and ``max_arms`` count the reference arm;
    ``max_arms >= min_arms`` is checked by the service (the error names ``evolution.max_arms``).
    """

    enabled: bool = True
    evolve_interval_s: float = Field(3600.0, ge=1, le=30 * 86_400)
    min_exposures: float = Field(DEFAULT_EVOLUTION.min_exposures, ge=0, le=1e12)
    drop_count: int = Field(DEFAULT_EVOLUTION.drop_count, ge=0, le=256)
    min_arms: int = Field(DEFAULT_EVOLUTION.min_arms, ge=1, le=256)
    max_arms: int = Field(DEFAULT_EVOLUTION.max_arms, ge=1, le=256)
    score: ScoreKind = DEFAULT_EVOLUTION.score
    retire_below_prob_beat_reference: float | None = Field(
        DEFAULT_EVOLUTION.retire_below_prob_beat_reference, gt=0, le=1
    )
    mix: EvolutionMix = Field(default_factory=EvolutionMix)
    parent_pool_size: int = Field(DEFAULT_EVOLUTION.parent_pool_size, ge=1, le=256)
    mutation_scale: float = Field(DEFAULT_EVOLUTION.mutation_scale, gt=0, le=1)
    crossover_blend: bool = DEFAULT_EVOLUTION.crossover_blend
    inherit_posterior: bool = DEFAULT_EVOLUTION.inherit_posterior
    inherited_pseudo_count_cap: float = Field(
        DEFAULT_EVOLUTION.inherited_pseudo_count_cap, gt=0, le=1e9
    )
    prob_best_draws: int = Field(DEFAULT_EVOLUTION.prob_best_draws, ge=100, le=200_000)
    max_draw_attempts: int = Field(DEFAULT_EVOLUTION.max_draw_attempts, ge=1, le=1000)

    def to_settings(self, **overrides: Any) -> EvolutionSettings:
        """The pure settings these fields give (``overrides`` by EvolutionSettings name).

        Raises :class:`~bandit.errors.InvalidParameterError` for settings that are valid one
        by one but not together; :func:`evolution_field` names the field to blame.
        """
        values = self.model_dump(exclude={*SCHEDULE_FIELDS, "mix"})
        weights = {weight: getattr(self.mix, name) for name, weight in MIX_WEIGHTS.items()}
        return EvolutionSettings(**{**values, **weights, **overrides})


class EvolutionMixOut(BaseModel):
    random: float
    mutation: float
    crossover: float


class EvolutionSettingsOut(BaseModel):
    """The genetic step's settings in force, every one of them (as EvolutionIn)."""

    enabled: bool = Field(description="scheduled steps run every evolve_interval_s")
    evolve_interval_s: float
    min_exposures: float
    drop_count: int
    min_arms: int
    max_arms: int = Field(
        description="the step fills the arm set up to this many active arms (the reference "
        "included). Without evolution settings at creation: the number of active arms (at "
        "least min_arms), so that a step replaces arms without growing the set"
    )
    score: ScoreKind
    retire_below_prob_beat_reference: float | None
    mix: EvolutionMixOut
    parent_pool_size: int
    mutation_scale: float
    crossover_blend: bool
    inherit_posterior: bool
    inherited_pseudo_count_cap: float
    prob_best_draws: int
    max_draw_attempts: int

    @classmethod
    def of(
        cls, settings: EvolutionSettings, *, enabled: bool, evolve_interval_s: float
    ) -> EvolutionSettingsOut:
        values = {
            field.name: getattr(settings, field.name)
            for field in dataclasses.fields(settings)
            if field.name not in MIX_WEIGHTS.values()
        }
        mix = EvolutionMixOut(
            **{name: getattr(settings, weight) for name, weight in MIX_WEIGHTS.items()}
        )
        return cls(enabled=enabled, evolve_interval_s=evolve_interval_s, mix=mix, **values)


# The pure layer declares the decisions' defaults; the request body reads them from here.
DEFAULT_DECISIONS = DecisionSettings()


class Decisions(Strict):
    """When the experiment's decisions act (``bandit.decisions.DecisionSettings``, whose
    defaults these are; docs/decisions.md). Absent fields take the defaults."""

    guardrail_min_exposures: float = Field(
        DEFAULT_DECISIONS.guardrail_min_exposures,
        ge=0,
        le=MAX_MIN_EXPOSURES,
        description="an arm (or, for the circuit breaker, the bandit group) is judged on a "
        "guardrail only once it has this many exposures in the phase",
    )
    circuit_breaker: StrictBool = Field(
        DEFAULT_DECISIONS.circuit_breaker,
        description="pause the experiment when the bandit group as a whole is confidently "
        "worse than the reference beyond the tolerance (decision metric or a guardrail)",
    )
    decision_max_loss: float = Field(
        DEFAULT_DECISIONS.decision_max_loss,
        ge=0,
        le=1,
        description="the relative loss on the decision metric the circuit breaker tolerates",
    )
    winner_p_best: float = Field(
        DEFAULT_DECISIONS.winner_p_best,
        gt=MIN_WINNER_P_BEST,
        le=1,
        description="a winner's probability of being the best active arm, at least",
    )
    winner_min_lift: float = Field(
        DEFAULT_DECISIONS.winner_min_lift,
        ge=-1,
        le=MAX_WINNER_MIN_LIFT,
        description="a winner's always-valid lift interval over the reference lies above "
        "this (0.0: the arm is confidently better than the reference)",
    )
    winner_sustain_s: float = Field(
        DEFAULT_DECISIONS.winner_sustain_s,
        ge=0,
        le=MAX_WINNER_SUSTAIN_S,
        description="both winner thresholds must hold at every evaluation for this long",
    )

    def to_settings(self) -> DecisionSettings:
        return DecisionSettings(**self.model_dump())


# Secondary and guardrail metrics an experiment may have declared at once.
MAX_METRICS = 32


def not_exposure(value: str) -> str:
    """A decision metric is an event type other than the exposures it is counted per."""
    if value == "exposure":
        raise ValueError("expected an event name other than 'exposure'")
    return value


class MetricIn(Strict):
    """A secondary or guardrail metric: an event type reported like the decision metric's,
    counted per exposure, with the direction in which it is better. Its counts start when
    it is declared."""

    event: EventType = Field(description="the event type, as clients report it")
    role: Literal["secondary", "guardrail"] = Field(
        description="secondary: reported; guardrail: protected (max_loss is the tolerance)"
    )
    direction: Direction = Field(
        description="increase: more events per exposure is better; decrease: fewer is better"
    )
    max_loss: float | None = Field(
        None,
        gt=0,
        lt=1,
        validate_default=True,
        description="guardrails only, required: the tolerated relative loss in (0, 1), "
        "0.05 for 'may not get more than 5% worse'",
    )

    @field_validator("event")
    @classmethod
    def _event(cls, value: str) -> str:
        return not_exposure(value)

    @field_validator("max_loss")
    @classmethod
    def _max_loss_for_guardrails(cls, value: float | None, info: ValidationInfo) -> float | None:
        role = info.data.get("role")
        if role == MetricRole.GUARDRAIL and value is None:
            raise ValueError("required for a guardrail: the tolerated relative loss in (0, 1)")
        if role == MetricRole.SECONDARY and value is not None:
            raise ValueError("expected no max_loss for a secondary metric (guardrails only)")
        return value


class MetricOut(BaseModel):
    id: int
    event: str
    role: MetricRole
    direction: Direction
    max_loss: float | None
    added_at: datetime = Field(description="declared: its counts start here")
    removed_at: datetime | None
    removed: bool


class ExperimentCreate(Strict):
    name: Slug
    parameters: list[ParameterIn] = Field(min_length=1, max_length=64)
    reference_config: ConfigIn
    arms: list[ConfigIn] = Field(default_factory=list, max_length=256)
    reference_share: float = Field(0.2, gt=0, lt=1)
    mode: Mode = Mode.REQUEST
    policy: Literal["thompson", "ucb1", "egreedy", "edecay"] = "thompson"
    policy_params: PolicyParams = Field(default_factory=PolicyParams)
    prior_alpha: float = Field(1.0, gt=0, le=1e6)
    prior_beta: float = Field(1.0, gt=0, le=1e6)
    update_interval_s: float | None = Field(None, ge=0.1, le=86_400)
    decay: float = Field(1.0, gt=0, le=1)
    target_event: EventType = "contact"
    exposure_source: ExposureSource = ExposureSource.SERVER
    salt: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:-]{1,64}$")] | None = Field(
        None,
        description="hashed with each unit to form the groups; random by default. Set it to "
        "reproduce a run exactly or to keep the reference group of an earlier experiment",
    )
    evolution: EvolutionIn | None = Field(
        None, description="genetic step settings; absent: no scheduled steps"
    )
    attribution_window_s: float = Field(
        14_400.0,
        ge=60,
        le=30 * 86_400,
        description="events count only within this many seconds of their ticket's "
        "assignment; later ones (and tickets issued in the future) get 422. At most the "
        "server's event retention (RANKTUNE_EVENT_RETENTION_DAYS) minus an hour: 601200 s "
        "with the default 7 days",
    )
    max_events_per_exposure: EventLimits | None = Field(
        None,
        description="event type (or '*' for any other type) -> the most events of that type "
        "one ticket (one exposure) credits; the rest is stored but quarantined. Default "
        "{'*': 1, 'exposure': 1}",
    )
    nursery_exposures: float = Field(
        0.0,
        ge=0,
        le=1e12,
        description="an active arm with fewer credited exposures than this is in the "
        "nursery: served nursery_share of the target draws (with the other nursery arms) "
        "instead of by the policy. 0: no nursery",
    )
    nursery_share: float = Field(
        0.1,
        gt=0,
        lt=1,
        description="the share of the target group's draws that the nursery arms get, "
        "split uniformly among them, while some arms are in the nursery and some are not",
    )
    decisions: Decisions | None = Field(
        None,
        description="guardrails, circuit breaker and winner thresholds; absent fields (or "
        "the whole object) take the defaults",
    )

    metrics: list[MetricIn] = Field(
        default_factory=list,
        max_length=MAX_METRICS,
        description="secondary and guardrail metrics (each event at most once, not the "
        "target_event); more can be added later with POST /v1/experiments/{name}/metrics",
    )

    @field_validator("target_event")
    @classmethod
    def _not_exposure(cls, value: str) -> str:
        return not_exposure(value)


class ArmCreate(Strict):
    config: ConfigIn


class ArmOut(BaseModel):
    id: int
    config: dict[str, Number]
    origin: Origin
    parent_ids: list[int]
    generation: int
    status: ArmStatus
    alpha: float
    beta: float
    exposures: float = Field(description="credited exposures in the current phase")
    target_events: float = Field(description="credited target events in the current phase")
    quarantined_events: float = Field(
        0.0, description="target events its tickets reported beyond the limits, not credited"
    )
    created_at: datetime
    retired_at: datetime | None
    retired_reason: str | None


class ExperimentOut(BaseModel):
    id: int
    name: str
    status: ExperimentStatus
    parameters: list[dict[str, Any]]
    reference_config: dict[str, Number]
    reference_arm_id: int
    reference_share: float
    mode: Mode
    policy: str
    policy_params: dict[str, Any]
    prior_alpha: float
    prior_beta: float
    update_interval_s: float
    decay: float
    target_event: str
    exposure_source: ExposureSource
    created_at: datetime
    last_tick_at: datetime | None
    tick_count: int
    window_arm_id: int | None
    arms: list[ArmOut]
    evolution: EvolutionSettingsOut = Field(
        description="the genetic step's settings in force: as given at creation with the "
        "defaults filled in, or, without settings, the defaults with enabled false and "
        "max_arms the number of active arms"
    )
    evolve_interval_s: float | None = Field(None, description="null unless scheduled steps run")
    last_evolved_at: datetime | None = None
    generation: int = 0
    attribution_window_s: float = 14_400.0
    max_events_per_exposure: dict[str, int] = Field(
        default_factory=dict, description="in force: the defaults with the experiment's own"
    )
    nursery_exposures: float = 0.0
    nursery_share: float = 0.1
    decisions: Decisions = Field(
        default_factory=Decisions, description="in force: the defaults with the experiment's own"
    )
    paused_reason: dict[str, Any] | None = Field(
        None,
        description="why the experiment was paused: by an admin, or by the circuit breaker "
        "with the rule, the metric and the numbers (null while it runs)",
    )
    winner: dict[str, Any] | None = Field(
        None,
        description="the arm declared the winner of the current phase, since when and on "
        "which numbers (null: none yet)",
    )
    winner_candidate: dict[str, Any] | None = Field(
        None,
        description="the arm passing the winner thresholds now, and since when (declared "
        "once it has passed for winner_sustain_s)",
    )
    metrics: list[MetricOut] = Field(
        default_factory=list,
        description="the secondary and guardrail metrics in force (the decision metric is "
        "target_event); GET .../metrics lists removed ones too",
    )
    phase: int = Field(
        1,
        description="the current phase: posteriors and the report compare with the "
        "reference configuration of this phase (GET .../phases has the history)",
    )


class ExperimentSummary(BaseModel):
    id: int
    name: str
    status: ExperimentStatus
    mode: Mode
    policy: str
    active_arms: int
    tick_count: int
    created_at: datetime
    phase: int = 1


# Why a phase changed, or an admin note: free text, no NUL (PostgreSQL text cannot store it).
Note = Annotated[str, StringConstraints(max_length=1000, pattern=r"^[^\x00]*$")]


class PromoteIn(Strict):
    """Make an arm's configuration the reference configuration: a new phase."""

    arm_id: int = Field(ge=1, le=2**31 - 1, description="an active arm of the target group")
    reason: Note | None = Field(None, description="why; kept with the phase and the audit")


# PATCH /v1/experiments/{name}: settings that can change without invalidating the
# comparison, and those that start a new phase (the same mechanism as a promotion).
SAFE_SETTINGS = (
    "update_interval_s",
    "attribution_window_s",
    "max_events_per_exposure",
    "evolution",
    "nursery_exposures",
    "nursery_share",
    "decisions",
)
PHASE_SETTINGS = ("reference_config", "reference_share", "target_event")
_CREATE = ExperimentCreate.model_fields


def _given_only(description: str, like: str | None = None) -> Any:
    """A PATCH field without a default that counts: the service reads only the fields
    given, and an explicit null is refused unless the type allows it. ``like``: a field of
    the create request whose bounds it has."""
    bounds = {
        key: getattr(item, key)
        for item in (_CREATE[like].metadata if like else ())
        for key in ("ge", "gt", "le", "lt")
        if getattr(item, key, None) is not None
    }
    return Field(None, description=description, **bounds)


class ExperimentPatch(BaseModel):
    """Settings to change; the fields not given keep their values.

    ``reference_config``, ``reference_share`` and ``target_event`` change what the
    comparison means: a change to any of them ends the current phase (final tick, report
    snapshot) and starts the next, with every active arm's posterior back at the prior.
    Every other field takes effect at once. Fields of the create request not listed here
    are fixed at creation (422 naming them); arms and metrics have their own calls.
    """

    # Other members are read (and refused with a 422 naming them) by the service, which
    # can say whether a field is fixed at creation or unknown; the schema forbids them.
    model_config = ConfigDict(extra="allow", json_schema_extra={"additionalProperties": False})

    update_interval_s: float = _given_only("seconds between ticks", "update_interval_s")
    attribution_window_s: float = _given_only(
        "events count only within this many seconds of their ticket's assignment; "
        "lengthening it does not revive tickets that had already expired",
        "attribution_window_s",
    )
    max_events_per_exposure: EventLimits | None = _given_only("as on creation; null: the defaults")
    evolution: dict[str, Any] = _given_only(
        "some fields of the create request's `evolution` object (`mix` may be partial "
        "too): they replace those in force, the others keep their values"
    )
    nursery_exposures: float = _given_only("as on creation", "nursery_exposures")
    nursery_share: float = _given_only("as on creation", "nursery_share")
    decisions: dict[str, Any] = _given_only(
        "some fields of the create request's `decisions` object: they replace those in "
        "force, the others keep their values; the next evaluation uses them"
    )
    reference_config: ConfigIn = _given_only(
        "a new reference configuration (starts a new phase); an active arm with this "
        "configuration is retired as its duplicate"
    )
    reference_share: float = _given_only("starts a new phase", "reference_share")
    target_event: EventType = _given_only("the decision metric; starts a new phase")
    reason: Note | None = Field(None, description="why; kept with the audit and the phase")

    @field_validator("target_event")
    @classmethod
    def _not_exposure(cls, value: str) -> str:
        return not_exposure(value)


class PhaseOut(BaseModel):
    """One phase: which reference configuration (share, decision metric) held when."""

    number: int
    started_at: datetime
    ended_at: datetime | None = Field(description="null for the current phase")
    reference_arm_id: int
    reference_config: dict[str, Number]
    reference_share: float
    target_event: str
    trigger: PhaseTrigger = Field(
        description="create: the first phase; promote: an arm became the reference; "
        "settings: PATCH changed the reference configuration, share or decision metric"
    )
    reason: str | None
    changes: dict[str, Any] = Field(
        description="what started it: promoted_arm_id, and each changed setting's before and after"
    )
    summary: dict[str, Any] | None = Field(
        description="how it ended (null while current): the final tick, pending counts "
        "discarded, and each arm's final posterior and totals"
    )
    report_snapshot_id: int | None = Field(
        description="the report snapshot of its final scorecard (null while current)"
    )


class ArmStats(BaseModel):
    """One arm, led by its lift over the reference group (the question people ask), then
    the evidence behind it."""

    arm_id: int
    origin: Origin
    generation: int
    status: ArmStatus
    config: dict[str, Number]
    lift: float | None = Field(
        description="the arm's lift over the reference group: posterior median of its rate "
        "/ the reference rate - 1 (0.10 = +10%); 0 for the reference itself"
    )
    lift_ci_low: float | None = Field(description="95% credible interval of the lift")
    lift_ci_high: float | None
    prob_beat_reference: float | None = Field(
        description="posterior probability that the arm earns more target events per "
        "exposure than the reference group"
    )
    prob_best: float | None = Field(
        description="posterior probability that the arm is the best of the active arms"
    )
    exposures: float
    target_events: float
    quarantined_events: float = Field(
        0.0, description="target events its tickets reported beyond the limits, not credited"
    )
    rate: float | None = Field(description="target events per exposure")
    alpha: float
    beta: float
    posterior_mean: float | None = Field(
        description="alpha / (alpha + beta) on the reference-ratio scale, not a conversion "
        "rate: the arm's share of the pair (arm, reference); 1/2 means as good as the "
        "reference, and lift = posterior_mean / (1 - posterior_mean) - 1 (roughly)"
    )


class ExperimentStats(BaseModel):
    experiment: str
    tick_count: int
    reference_rate: float | None
    arms: list[ArmStats]
    prob_best_draws: int = Field(
        description="joint posterior draws behind prob_best: as requested, or fewer when "
        "draws x active arms would exceed the server's bound"
    )
    prob_best_draws_requested: int
    seed: int


class TickArmOut(BaseModel):
    arm_id: int
    exposures: float
    target_events: float
    alpha_increment: float
    beta_increment: float
    alpha_before: float
    beta_before: float
    alpha_after: float
    beta_after: float
    quarantined_events: float = 0.0


class TickOut(BaseModel):
    id: int
    number: int
    created_at: datetime
    applied: bool = Field(
        description="false when the window had no reference exposure: its counts are shown "
        "but were carried forward, so the next applied tick counts them (sum applied ticks only)"
    )
    mode: Mode
    decay: float
    reference_exposures: float
    reference_events: float
    target_exposures: float
    target_events: float
    window_arm_id: int | None
    next_window_arm_id: int | None
    empty_windows_before: int = Field(
        0,
        description="scheduled windows in which nothing arrived since the previous recorded "
        "tick: counted, not recorded",
    )
    quarantined_events: float = Field(
        0.0,
        description="target events beyond the event limits (per ticket, or an arm's "
        "exposures times the limit), in both groups: stored, not credited",
    )
    uncredited: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="what this tick consumed without crediting: reason (over_ticket_limit, "
        "over_exposure_limit, arm_retired, previous_phase) -> event type -> count",
    )
    arms: list[TickArmOut]


class AuditOut(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    experiment_id: int | None
    details: dict[str, Any]


class Assignment(BaseModel):
    experiment: str
    group: Literal["target", "reference"]
    arm_id: int
    config: dict[str, Number]
    ticket: str
    active: bool = Field(description="false while the experiment is paused or stopped")


MAX_EVENT_COUNT = 1000


class EventIn(Strict):
    """One reported event. Strict: ``count`` is a JSON integer (not ``"1"``, ``1.0``,
    ``1e3`` or ``true``), as the schema says."""

    model_config = ConfigDict(extra="forbid", strict=True)

    ticket: Annotated[str, StringConstraints(min_length=1, max_length=256)] = Field(
        description="the ticket of the assignment that served the configuration"
    )
    type: EventType = Field(
        description="'exposure' (experiments counting client exposures) or an event name "
        "such as 'contact'"
    )
    count: int = Field(
        1,
        ge=1,
        le=MAX_EVENT_COUNT,
        description="events of this type in one report; a ticket credits at most its "
        "experiment's max_events_per_exposure of each type, the rest is stored but quarantined",
    )
    event_id: EventId = Field(
        description="unique per event: a retry with the same id is stored once"
    )


class EventBatch(Strict):
    """The body of ``POST /v1/events``; :func:`event_batch_model` sets the batch limit."""

    events: list[EventIn]


def event_batch_request_body() -> dict[str, Any]:
    """The OpenAPI ``requestBody`` of ``POST /v1/events``, for ``openapi_extra``: the route
    reads its body itself (see api.routes.client), so the framework does not see the model.
    EventIn is inlined (it has no references of its own), so nothing needs adding to the
    document's components."""
    schema = EventBatch.model_json_schema()
    schema["properties"]["events"]["items"] = schema.pop("$defs")["EventIn"]
    schema["properties"]["events"]["description"] = (
        "at most RANKTUNE_MAX_BATCH_EVENTS (1,000 by default) events; more get 413"
    )
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def event_batch_model(max_events: int) -> type[EventBatch]:
    """EventBatch with at most ``max_events`` events: pydantic stops at the first event past
    the limit (``too_long``) instead of validating a huge list item by item."""
    model: type[EventBatch] = create_model(
        "EventBatch",
        __base__=EventBatch,
        events=(list[EventIn], Field(min_length=0, max_length=max_events)),
    )
    return model


class EventsAccepted(BaseModel):
    accepted: int = Field(description="events stored by this request")
    duplicates: int = Field(description="events already stored earlier (same event_id and payload)")


class SnapshotArm(BaseModel):
    arm_id: int
    alpha: float
    beta: float
    exposures: float = Field(description="credited exposures, as of the snapshot")
    in_nursery: bool = Field(
        description="served on the nursery's schedule rather than by the policy"
    )


class SnapshotReference(BaseModel):
    arm_id: int
    config: dict[str, Number] = Field(
        description="the reference configuration: what the reference group gets, and what "
        "clients serve when they cannot reach ranktune (the client SDK's fallback)"
    )


class SnapshotOut(BaseModel):
    experiment: str
    version: int
    tick_count: int
    status: str
    loaded_at: datetime
    exposure_source: ExposureSource = Field(
        description="'server': every assignment counts as an exposure; 'client': only the "
        "clients' 'exposure' events do"
    )
    reference: SnapshotReference
    arms: list[SnapshotArm]


# -- evolution -----------------------------------------------------------------------------
class ExpertConfigCreate(Strict):
    config: ConfigIn
    # no NUL: PostgreSQL text cannot store it
    note: Annotated[str, StringConstraints(max_length=1000, pattern=r"^[^\x00]*$")] | None = None


class ExpertConfigOut(BaseModel):
    id: int
    config: dict[str, Number]
    note: str | None
    status: ExpertStatus
    submitted_at: datetime
    resolved_at: datetime | None
    generation: int | None
    consumed_by_arm_id: int | None
    detail: str | None


class RetiredArmOut(BaseModel):
    arm_id: int
    config: dict[str, Number]
    reason: RetirementReason | Literal["guardrail"] = Field(
        description="lowest_score: among the drop_count worst; over_max_arms: retired "
        "beyond them because the arm set held more than max_arms; guardrail: confidently "
        "worse than the reference on a guardrail metric beyond its max_loss (`guardrail` "
        "has the numbers)"
    )
    score: float | None = Field(
        description="the ranking score: posterior mean or P(best); null for a guardrail"
    )
    exposures: float
    prob_beat_reference: float
    alpha: float
    beta: float
    guardrail: dict[str, Any] | None = Field(
        None,
        description="a guardrail retirement's evidence: the metric, its max_loss and the "
        "report row (effect, intervals, counts) that tripped it",
    )


class AddedArmOut(BaseModel):
    arm_id: int | None = Field(description="null in a dry run")
    config: dict[str, Number]
    origin: Origin
    parent_ids: list[int]
    alpha: float = Field(description="its starting posterior Beta(alpha, beta)")
    beta: float
    expert_config_id: int | None = Field(description="the queue entry it came from (experts)")


class RankedArmOut(BaseModel):
    """An active non-reference arm as the step ranked it."""

    arm_id: int
    score: float = Field(description="the ranking score: posterior mean or P(best)")
    mean: float = Field(description="posterior mean")
    prob_beat_reference: float
    exposures: float
    eligible: bool = Field(
        description="false for a young arm (fewer than min_exposures): never ranked among "
        "the eligible nor retired"
    )


class SkippedSlotOut(BaseModel):
    """A planned addition that produced no arm, and why."""

    origin: Origin
    parent_ids: list[int]
    attempts: int = Field(description="draws tried before giving up")
    reason: str


class ExpertOutcomeOut(BaseModel):
    """What the step did with one entry of the expert queue it consumed."""

    queue_index: int = Field(description="its position among the waiting entries")
    status: Literal["added", "duplicate", "invalid"]
    detail: str
    expert_config_id: int


class GenerationDetailsOut(BaseModel):
    """The rest of a step's plan, as recorded with its generation. A guardrail
    retirement (trigger "guardrail") ranks nothing: ``score`` and ``seed`` are null, the
    lists empty, and ``notes`` says what tripped."""

    score: ScoreKind | None
    best_arm_id: int | None
    ranking: list[RankedArmOut] = Field(description="eligible arms best first, then young ones")
    skipped: list[SkippedSlotOut]
    expert_outcomes: list[ExpertOutcomeOut]
    n_active_before: int
    n_active_after: int
    notes: list[str]
    seed: int | None
    settings: EvolutionSettingsOut | None = Field(
        description="the settings in force (null in generations recorded before they were "
        "kept for experiments created without evolution settings)"
    )


class EvolutionStepOut(BaseModel):
    experiment: str
    dry_run: bool
    applied: bool = Field(description="the arm set changed and a generation was recorded")
    generation: int | None = Field(description="the generation recorded (or previewed)")
    seed: int = Field(description="pass it back as ?seed= to repeat exactly this step")
    score: ScoreKind
    best_arm_id: int | None
    retired: list[RetiredArmOut]
    added: list[AddedArmOut]
    ranking: list[RankedArmOut] = Field(description="eligible arms best first, then young ones")
    skipped: list[SkippedSlotOut]
    expert_outcomes: list[ExpertOutcomeOut]
    n_active_before: int
    n_active_after: int
    notes: list[str]
    settings: EvolutionSettingsOut = Field(description="the settings the step used")


class GenerationOut(BaseModel):
    number: int
    created_at: datetime
    trigger: str
    replica: str | None
    retired: list[RetiredArmOut]
    added: list[AddedArmOut]
    details: GenerationDetailsOut


class AncestorOut(ArmOut):
    depth: int = Field(description="1 for a parent, 2 for a grandparent, ...")


class LineageOut(BaseModel):
    arm: ArmOut
    ancestors: list[AncestorOut] = Field(description="breadth first, each arm once")
    founder_ids: list[int] = Field(description="ancestors (or the arm itself) without parents")


# -- notifications and webhooks ------------------------------------------------------------
MAX_URL_LENGTH = 2048


def _webhook_url(value: str) -> str:
    """An absolute http(s) URL the deliverer can POST to exactly as given (no normalising:
    the receiver sees the path and query the admin wrote)."""
    if len(value) > MAX_URL_LENGTH:
        raise ValueError(f"expected at most {MAX_URL_LENGTH} characters")
    if not value.isascii() or any(char <= " " or char == "\x7f" for char in value):
        raise ValueError(
            "expected an ASCII URL without spaces or control characters (percent-encode "
            "them, and write an international host name in punycode)"
        )
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  # raises ValueError for a port that is not a number in range
    except ValueError as error:
        raise ValueError(f"expected an http:// or https:// URL ({error})") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError("expected an http:// or https:// URL")
    if not parts.hostname:
        raise ValueError("expected an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            "expected no user:password@ part (receivers check the X-Ranktune-Signature)"
        )
    if parts.fragment:
        raise ValueError("expected no #fragment (it is never sent)")
    return value


class WebhookCreate(Strict):
    url: str = Field(
        max_length=MAX_URL_LENGTH,
        description="http:// or https:// URL that notifications are POSTed to, as given; "
        "redirects are not followed",
    )
    experiment: Slug | None = Field(
        None, description="the experiment whose notifications are sent; null: every experiment"
    )
    events: list[NotificationKind] | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="the kinds of notification sent; null: every kind",
    )
    secret: str | None = Field(
        None,
        description="the key of the HMAC-SHA256 signature (16 to 256 printable ASCII "
        "characters without spaces); generated when absent. Shown only in this answer",
    )

    _url = field_validator("url")(_webhook_url)

    @field_validator("events")
    @classmethod
    def _distinct(cls, kinds: list[NotificationKind] | None) -> list[NotificationKind] | None:
        return None if kinds is None else list(dict.fromkeys(kinds))

    @field_validator("secret")
    @classmethod
    def _printable(cls, secret: str | None) -> str | None:
        if secret is not None and not (
            16 <= len(secret) <= 256 and all("!" <= char <= "~" for char in secret)
        ):
            raise ValueError("expected 16 to 256 printable ASCII characters without spaces")
        return secret


class WebhookOut(BaseModel):
    id: int
    url: str
    experiment: str | None = Field(description="null: every experiment")
    events: list[NotificationKind] | None = Field(description="null: every kind")
    active: bool = Field(description="false once deleted (its deliveries are kept)")
    secret_hint: str = Field(description="the secret's last 4 characters, after '...'")
    created_at: datetime
    deactivated_at: datetime | None


class WebhookCreated(WebhookOut):
    secret: str = Field(description="the signing key; this is the only answer that shows it")


class NotificationOut(BaseModel):
    id: int
    experiment: str | None
    kind: NotificationKind
    created_at: datetime
    payload: dict[str, Any]


class DeliveryOut(BaseModel):
    id: int = Field(description="sent as the body's id and X-Ranktune-Delivery")
    webhook_id: int
    notification_id: int
    experiment: str | None
    kind: NotificationKind
    payload: dict[str, Any]
    status: DeliveryStatus = Field(
        description="pending (waiting for an attempt), delivered (2xx), failed (4xx other "
        "than 429, a redirect, or out of attempts), cancelled (the webhook was deleted)"
    )
    attempts: int
    last_status_code: int | None = Field(
        description="the receiver's HTTP status at the last attempt; null: no answer"
    )
    last_error: str | None = Field(description="why the last attempt did not deliver")
    created_at: datetime
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None = Field(description="null once the delivery is over")
    finished_at: datetime | None


# -- the experiment report -----------------------------------------------------------------
class ReportMetricOut(BaseModel):
    event: str
    role: MetricRole
    direction: Direction
    max_loss: float | None = Field(description="guardrails: the tolerated relative loss")
    since: datetime | None = Field(
        description="when it became a metric of the experiment (the decision metric: the "
        "experiment's creation); its counts in a phase start at the later of this and the "
        "phase's start"
    )


class ReportRowOut(BaseModel):
    """One metric, one treatment against the reference group (docs/statistics.md)."""

    metric: str
    role: MetricRole
    direction: Direction
    treatment: str | int = Field(description='"bandit" for the whole target group, or an arm id')
    control_mean: float | None = Field(description="the reference group's events per exposure")
    treatment_mean: float | None = Field(description="the treatment's events per exposure")
    effect: float | None = Field(description="treatment_mean / control_mean - 1 (0.10 = +10%)")
    lower: float | None = Field(description="fixed-horizon interval of the effect (1 - alpha)")
    upper: float | None
    p_value: float | None = Field(description="fixed horizon, H0: effect = 0")
    significant: bool = Field(description="p_value < alpha (valid at one planned look)")
    lower_anytime: float | None = Field(
        description="always-valid interval (confidence sequence): valid however often the "
        "report is read"
    )
    upper_anytime: float | None
    significant_anytime: bool = Field(description="the always-valid interval excludes 0")
    verdict: Literal["better", "worse", "unclear"] = Field(
        description="on the always-valid interval and the metric's direction"
    )
    control_events: float
    control_exposures: float
    treatment_events: float
    treatment_exposures: float
    reason: str | None = Field(description="why some fields are null")


class HealthCheckOut(BaseModel):
    check: Literal[
        "sample_ratio_mismatch", "reference_traffic", "scheduler", "exploration", "time_to_decision"
    ]
    status: Literal["ok", "warning", "failed"]
    detail: str = Field(description="the evidence, in words")
    action: str = Field(description="what to do about it")
    evidence: dict[str, float | int | str | bool | None] = Field(
        default_factory=dict, description="the evidence, as numbers"
    )


class ReportArmOut(BaseModel):
    id: int
    origin: Origin
    status: ArmStatus
    reference: bool
    config: dict[str, Number]
    generation: int
    parent_ids: list[int]
    created_at: datetime
    retired_at: datetime | None
    retired_reason: str | None


class ReportOut(BaseModel):
    experiment: str
    phase: int = Field(description="the phase reported")
    current_phase: int
    status: ExperimentStatus
    generated_at: datetime
    alpha: float
    min_events: float = Field(
        description="below this many events in a group, no interval or p-value"
    )
    planned_exposures: float = Field(
        description="where the always-valid interval is tightest (exposures of the smaller "
        "group); validity does not depend on it"
    )
    reference_arm_id: int
    metrics: list[ReportMetricOut]
    arms: list[ReportArmOut] = Field(description="the reference and every arm with a row")
    rows: list[ReportRowOut]
    health: list[HealthCheckOut]


class ReportSnapshotSummaryOut(BaseModel):
    id: int
    phase: int
    created_at: datetime
    trigger: str = Field(description="what was decided: guardrail, circuit_breaker, ...")
    detail: dict[str, Any]


class ReportSnapshotOut(ReportSnapshotSummaryOut):
    report: dict[str, Any] = Field(description="the report as it stood then")
