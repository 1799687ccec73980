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
    model_validator,
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
    Role,
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


class ReadinessCheckOut(BaseModel):
    name: str = Field(description="database, migrations, snapshots, event_writer or scheduler")
    ok: bool = Field(description="whether the check passed")
    detail: str = Field(description="what was found; for a failing check, why it fails")


class ReadinessOut(BaseModel):
    """``GET /ready``: 200 when every check passes, else 503 with the same shape."""

    status: Literal["ready", "not_ready"] = Field(
        description="`ready` when every check passed, else `not_ready`"
    )
    checks: list[ReadinessCheckOut] = Field(description="every check, passed or failed")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# The example experiment of the README and the API reference: four ranker weights, the
# experts' reference configuration, three candidate arms. The request bodies' examples
# refer to it (its name, its parameters; arm 2 is its first candidate arm in a new database).
SIMILAR_ITEMS: dict[str, Any] = {
    "name": "similar-items",
    "parameters": [
        {"name": "text_match", "type": "float", "low": 0, "high": 2},
        {"name": "distance", "type": "float", "low": 0, "high": 2},
        {"name": "price_diff", "type": "float", "low": 0, "high": 2},
        {"name": "region", "type": "int", "low": 0, "high": 3},
    ],
    "reference_config": {"text_match": 1.0, "distance": 1.0, "price_diff": 1.0, "region": 1},
    "arms": [
        {"text_match": 1.2, "distance": 0.8, "price_diff": 1.0, "region": 1},
        {"text_match": 0.8, "distance": 1.2, "price_diff": 0.5, "region": 2},
        {"text_match": 1.5, "distance": 0.5, "price_diff": 1.5, "region": 0},
    ],
    "reference_share": 0.2,
}
# The example event's ticket: the ticket of an assignment, which no static example can
# hold (tests/api/test_openapi_contract.py substitutes a real one).
TICKET_PLACEHOLDER = "<the ticket of an assignment>"


class ParameterIn(Strict):
    name: Identifier = Field(
        description="the parameter's name: a letter or _, then letters, digits or _ (at most 64)"
    )
    type: Literal["float", "int"] = Field("float", description="float or int")
    low: float = Field(description="the lowest value allowed (finite)")
    high: float = Field(description="the highest value allowed (finite, at least low)")
    distribution: Literal["uniform", "log_uniform"] = Field(
        "uniform", description="how genetic steps draw values: uniform, or log_uniform (low > 0)"
    )
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


# What each genetic step setting does: the request (EvolutionIn) and the answer
# (EvolutionSettingsOut) describe them alike.
_EVOLUTION = {
    "enabled": "run scheduled genetic steps every evolve_interval_s (admins can run one "
    "on demand either way)",
    "evolve_interval_s": "seconds between scheduled genetic steps (1 to 30 days)",
    "min_exposures": "an arm is ranked (and may be retired) only with at least this many exposures",
    "drop_count": "how many of the worst eligible arms a step retires",
    "min_arms": "a step never leaves fewer active arms than this (the reference included)",
    "max_arms": "a step fills the arm set up to this many active arms (the reference included)",
    "score": "how arms are ranked: mean (posterior mean) or prob_best (P(best), Monte Carlo)",
    "retire_below_prob_beat_reference": "if set, only arms whose P(beats the reference) is "
    "below this retire; null: no such condition",
    "mix": "relative weights of the random, mutation, crossover and model additions",
    "parent_pool_size": "mutations and crossovers breed from this many of the best eligible "
    "survivors",
    "mutation_scale": "a mutation's standard deviation as a fraction of each parameter's "
    "range, in (0, 1]",
    "crossover_blend": "crossover draws each float parameter between the parents' values "
    "(false: takes each from one parent)",
    "inherit_posterior": "a bred arm starts from a weakened copy of its parent's posterior "
    "instead of the prior",
    "inherited_pseudo_count_cap": "an inherited posterior's alpha + beta is scaled down to "
    "at most this",
    "prob_best_draws": "Monte Carlo draws behind the prob_best score",
    "max_draw_attempts": "draws tried per addition before a slot that keeps producing "
    "duplicates is skipped",
}
_MIX = {
    "random": "relative weight of configurations drawn at random from the space",
    "mutation": "relative weight of mutations of the best survivors",
    "crossover": "relative weight of crossovers of two of the best survivors",
    "model": "relative weight of the surrogate model's proposals (a Gaussian process fitted "
    "to every arm served in the phase; docs/model-search.md); 0: none",
}

# The pure layer declares the genetic step's defaults; the request body reads them from here.
DEFAULT_EVOLUTION = EvolutionSettings()
# mix field -> the EvolutionSettings field it sets: the one place where the request body's
# names differ from the pure settings' (every other setting has the same name in both).
MIX_WEIGHTS: dict[str, str] = {
    "random": "random_weight",
    "mutation": "mutation_weight",
    "crossover": "crossover_weight",
    "model": "model_weight",
}
# The fields of the ``evolution`` object that schedule the step rather than shape it.
SCHEDULE_FIELDS = ("enabled", "evolve_interval_s")


def evolution_field(setting: str) -> str:
    """The path, in a create request, of the field that sets an EvolutionSettings field."""
    mix = {weight: name for name, weight in MIX_WEIGHTS.items()}
    return f"evolution.mix.{mix[setting]}" if setting in mix else f"evolution.{setting}"


def _weight(name: str, description: str) -> Any:
    return Field(
        getattr(DEFAULT_EVOLUTION, MIX_WEIGHTS[name]), ge=0, le=1e6, description=description
    )


class EvolutionMix(Strict):
    """Relative weights of the non-expert additions of a genetic step (all zero: experts only)."""

    random: float = _weight("random", _MIX["random"])
    mutation: float = _weight("mutation", _MIX["mutation"])
    crossover: float = _weight("crossover", _MIX["crossover"])
    model: float = _weight("model", _MIX["model"])


class EvolutionIn(Strict):
    """The genetic step (names as in ``bandit.evolution.EvolutionSettings``,
    whose field defaults these are; the mix weights are ``MIX_WEIGHTS``).

    ``enabled`` turns on the scheduled step every ``evolve_interval_s``; admins can run a
    step on demand either way. ``min_arms`` and ``max_arms`` count the reference arm;
    ``max_arms >= min_arms`` is checked by the service (the error names ``evolution.max_arms``).
    """

    enabled: bool = Field(True, description=_EVOLUTION["enabled"])
    evolve_interval_s: float = Field(
        3600.0, ge=1, le=30 * 86_400, description=_EVOLUTION["evolve_interval_s"]
    )
    min_exposures: float = Field(
        DEFAULT_EVOLUTION.min_exposures, ge=0, le=1e12, description=_EVOLUTION["min_exposures"]
    )
    drop_count: int = Field(
        DEFAULT_EVOLUTION.drop_count, ge=0, le=256, description=_EVOLUTION["drop_count"]
    )
    min_arms: int = Field(
        DEFAULT_EVOLUTION.min_arms, ge=1, le=256, description=_EVOLUTION["min_arms"]
    )
    max_arms: int = Field(
        DEFAULT_EVOLUTION.max_arms, ge=1, le=256, description=_EVOLUTION["max_arms"]
    )
    score: ScoreKind = Field(DEFAULT_EVOLUTION.score, description=_EVOLUTION["score"])
    retire_below_prob_beat_reference: float | None = Field(
        DEFAULT_EVOLUTION.retire_below_prob_beat_reference,
        gt=0,
        le=1,
        description=_EVOLUTION["retire_below_prob_beat_reference"],
    )
    mix: EvolutionMix = Field(default_factory=EvolutionMix, description=_EVOLUTION["mix"])
    parent_pool_size: int = Field(
        DEFAULT_EVOLUTION.parent_pool_size, ge=1, le=256, description=_EVOLUTION["parent_pool_size"]
    )
    mutation_scale: float = Field(
        DEFAULT_EVOLUTION.mutation_scale, gt=0, le=1, description=_EVOLUTION["mutation_scale"]
    )
    crossover_blend: bool = Field(
        DEFAULT_EVOLUTION.crossover_blend, description=_EVOLUTION["crossover_blend"]
    )
    inherit_posterior: bool = Field(
        DEFAULT_EVOLUTION.inherit_posterior, description=_EVOLUTION["inherit_posterior"]
    )
    inherited_pseudo_count_cap: float = Field(
        DEFAULT_EVOLUTION.inherited_pseudo_count_cap,
        gt=0,
        le=1e9,
        description=_EVOLUTION["inherited_pseudo_count_cap"],
    )
    prob_best_draws: int = Field(
        DEFAULT_EVOLUTION.prob_best_draws,
        ge=100,
        le=200_000,
        description=_EVOLUTION["prob_best_draws"],
    )
    max_draw_attempts: int = Field(
        DEFAULT_EVOLUTION.max_draw_attempts,
        ge=1,
        le=1000,
        description=_EVOLUTION["max_draw_attempts"],
    )

    def to_settings(self, **overrides: Any) -> EvolutionSettings:
        """The pure settings these fields give (``overrides`` by EvolutionSettings name).

        Raises :class:`~bandit.errors.InvalidParameterError` for settings that are valid one
        by one but not together; :func:`evolution_field` names the field to blame.
        """
        values = self.model_dump(exclude={*SCHEDULE_FIELDS, "mix"})
        weights = {weight: getattr(self.mix, name) for name, weight in MIX_WEIGHTS.items()}
        return EvolutionSettings(**{**values, **weights, **overrides})


class EvolutionMixOut(BaseModel):
    random: float = Field(description=_MIX["random"])
    mutation: float = Field(description=_MIX["mutation"])
    crossover: float = Field(description=_MIX["crossover"])
    model: float = Field(0.0, description=_MIX["model"])


class EvolutionSettingsOut(BaseModel):
    """The genetic step's settings in force, every one of them (as EvolutionIn)."""

    enabled: bool = Field(description="scheduled steps run every evolve_interval_s")
    evolve_interval_s: float = Field(description=_EVOLUTION["evolve_interval_s"])
    min_exposures: float = Field(description=_EVOLUTION["min_exposures"])
    drop_count: int = Field(description=_EVOLUTION["drop_count"])
    min_arms: int = Field(description=_EVOLUTION["min_arms"])
    max_arms: int = Field(
        description="the step fills the arm set up to this many active arms (the reference "
        "included). Without evolution settings at creation: the number of active arms (at "
        "least min_arms), so that a step replaces arms without growing the set"
    )
    score: ScoreKind = Field(description=_EVOLUTION["score"])
    retire_below_prob_beat_reference: float | None = Field(
        description=_EVOLUTION["retire_below_prob_beat_reference"]
    )
    mix: EvolutionMixOut = Field(description=_EVOLUTION["mix"])
    parent_pool_size: int = Field(description=_EVOLUTION["parent_pool_size"])
    mutation_scale: float = Field(description=_EVOLUTION["mutation_scale"])
    crossover_blend: bool = Field(description=_EVOLUTION["crossover_blend"])
    inherit_posterior: bool = Field(description=_EVOLUTION["inherit_posterior"])
    inherited_pseudo_count_cap: float = Field(description=_EVOLUTION["inherited_pseudo_count_cap"])
    prob_best_draws: int = Field(description=_EVOLUTION["prob_best_draws"])
    max_draw_attempts: int = Field(description=_EVOLUTION["max_draw_attempts"])

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

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"event": "view", "role": "guardrail", "direction": "increase", "max_loss": 0.05},
                {"event": "message", "role": "secondary", "direction": "increase"},
            ]
        },
    )

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
    id: int = Field(description="the declaration's id")
    event: str = Field(description="the event type counted")
    role: MetricRole = Field(description="secondary or guardrail")
    direction: Direction = Field(description="increase or decrease: which way is better")
    max_loss: float | None = Field(
        description="guardrails: the tolerated relative loss; null for a secondary metric"
    )
    added_at: datetime = Field(description="declared: its counts start here")
    removed_at: datetime | None = Field(
        description="when it stopped being reported (UTC); null while in force"
    )
    removed: bool = Field(description="true once removed (its counts stay)")


MAX_SEGMENTS = 10_000  # per segmented experiment (a version 3 ticket could hold 2^24)
MAX_SEGMENT_LENGTH = 64
DEFAULT_SEGMENT = "default"  # segment 0 of every segmented experiment


class SegmentsIn(Strict):
    """A segmented experiment (docs/segments.md): one posterior per (arm, segment)."""

    max_segments: int = Field(
        ge=2,
        le=MAX_SEGMENTS,
        description="the most segments the experiment opens, the default segment included "
        f"(2 to {MAX_SEGMENTS}); a segment first seen when this many are open is served from "
        "the default segment",
    )


class SegmentsOut(BaseModel):
    max_segments: int = Field(description="the most segments, the default segment included")
    opened: list[str] = Field(
        description="the segments open so far, by index: 'default' (index 0) first"
    )


class AssignmentIn(Strict):
    """How a target unit's arm is chosen (docs/design.md, "Sticky assignment")."""

    sticky: bool = Field(
        False,
        description="true: a target unit keeps its arm until the posteriors move (the arm is "
        "the allocation probabilities' inverse at a hash of salt, unit and the experiment's "
        "version; in a segmented experiment, the segment's allocation and the version at "
        "which it last moved); false: an arm drawn per request. Needs mode 'request'",
    )


class AssignmentOut(BaseModel):
    sticky: bool = Field(
        description="true: a target unit keeps its arm within a posterior version; false: an "
        "arm drawn per request"
    )


class ExperimentCreate(Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [SIMILAR_ITEMS]})

    name: Slug = Field(
        description=(
            "the experiment's name: lowercase letters, digits, _ and -, at most 64, used in URLs"
        )
    )
    parameters: list[ParameterIn] = Field(
        min_length=1,
        max_length=64,
        description="the space: 1 to 64 numeric parameters with their bounds",
    )
    reference_config: ConfigIn = Field(
        description="the incumbent configuration: what the reference group always gets"
    )
    arms: list[ConfigIn] = Field(
        default_factory=list,
        max_length=256,
        description=(
            "founder arms (configurations within the space), besides the reference; at most 256"
        ),
    )
    reference_share: float = Field(
        0.2, gt=0, lt=1, description="the share of units in the reference group, in (0, 1)"
    )
    mode: Mode = Field(
        Mode.REQUEST,
        description="request: an arm drawn per assignment; window: one arm pinned per tick window",
    )
    policy: Literal["thompson", "ucb1", "egreedy", "edecay"] = Field(
        "thompson", description="the bandit policy: thompson, ucb1, egreedy or edecay"
    )
    policy_params: PolicyParams = Field(
        default_factory=PolicyParams, description="the policy's constants (absent: their defaults)"
    )
    prior_alpha: float = Field(
        1.0, gt=0, le=1e6, description="every arm's prior Beta(alpha, beta): alpha"
    )
    prior_beta: float = Field(
        1.0, gt=0, le=1e6, description="every arm's prior Beta(alpha, beta): beta"
    )
    update_interval_s: float | None = Field(
        None,
        ge=0.1,
        le=86_400,
        description="seconds between ticks (0.1 to 86400); default RANKTUNE_TICK_INTERVAL_S",
    )
    decay: float = Field(
        1.0,
        gt=0,
        le=1,
        description=(
            "per tick, the evidence (alpha and beta above the prior) is "
            "multiplied by this, in (0, 1]; 1: no decay"
        ),
    )
    target_event: EventType = Field(
        "contact",
        description="the decision metric: the event type the bandit optimises per exposure",
    )
    exposure_source: ExposureSource = Field(
        ExposureSource.SERVER,
        description=(
            "server: every assignment is an exposure; client: only the "
            "exposure events clients report"
        ),
    )
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

    segments: SegmentsIn | None = Field(
        None,
        description="segment the experiment: each (arm, segment) learns its own posterior, "
        "shrunk toward the arm's behaviour across segments, and assignments take "
        "?segment=; needs the thompson policy in request mode. Absent: not segmented",
    )

    assignment: AssignmentIn = Field(
        default_factory=AssignmentIn,
        description="how a target unit's arm is chosen; absent: an arm drawn per request",
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
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"config": {"text_match": 1.1, "distance": 0.9, "price_diff": 1.2, "region": 2}}
            ]
        },
    )

    config: ConfigIn = Field(
        description="parameter name -> value, for every parameter of the space, within its bounds"
    )
    segments: (
        list[Annotated[str, StringConstraints(min_length=1, max_length=MAX_SEGMENT_LENGTH)]] | None
    ) = Field(
        None,
        min_length=1,
        description="segmented experiments only: the names of the segments the arm is served "
        f"in (1 to {MAX_SEGMENT_LENGTH} characters each, distinct, at most the experiment's "
        "max_segments; opened or not yet); absent or null: every segment "
        "(docs/segments.md, 'Restricted arms')",
    )


class ArmOut(BaseModel):
    id: int = Field(description="the arm's id, unique across experiments")
    config: dict[str, Number] = Field(
        description="the arm's configuration: parameter name -> value"
    )
    origin: Origin = Field(
        description=(
            "where the arm came from: reference, expert, manual, random, mutation, crossover "
            "or model"
        )
    )
    parent_ids: list[int] = Field(
        description="the arms it came from: one for a mutation or a promoted reference, two "
        "for a crossover; empty for the others"
    )
    generation: int = Field(
        description="the experiment's generation when a genetic step or a phase change added "
        "it; 0 for a founder or an admin's arm"
    )
    status: ArmStatus = Field(
        description="active (drawn) or retired (kept with its history, never drawn again)"
    )
    alpha: float = Field(
        description="posterior Beta(alpha, beta) on the reference-ratio scale: alpha"
    )
    beta: float = Field(
        description="posterior Beta(alpha, beta) on the reference-ratio scale: beta"
    )
    exposures: float = Field(description="credited exposures in the current phase")
    target_events: float = Field(description="credited target events in the current phase")
    quarantined_events: float = Field(
        0.0, description="target events its tickets reported beyond the limits, not credited"
    )
    created_at: datetime = Field(description="when the arm was added (UTC)")
    retired_at: datetime | None = Field(
        description="when the arm was retired (UTC); null while active"
    )
    retired_reason: str | None = Field(
        description="why it was retired (an admin, a genetic step, a guardrail); null while active"
    )
    segments: list[str] | None = Field(
        None,
        description="segmented experiments: the segments the arm is served in; null: every segment",
    )


class ExperimentOut(BaseModel):
    id: int = Field(description="the experiment's id")
    name: str = Field(description="the experiment's name")
    status: ExperimentStatus = Field(description="running, paused, stopped or archived")
    parameters: list[dict[str, Any]] = Field(
        description="the space: each parameter's name, type, bounds, distribution and step"
    )
    reference_config: dict[str, Number] = Field(
        description="the reference configuration of the current phase"
    )
    reference_arm_id: int = Field(description="the arm holding the reference configuration")
    reference_share: float = Field(description="the share of units in the reference group")
    mode: Mode = Field(description="request or window")
    policy: str = Field(description="the bandit policy")
    policy_params: dict[str, Any] = Field(description="the policy's constants in force")
    prior_alpha: float = Field(description="the prior Beta(alpha, beta): alpha")
    prior_beta: float = Field(description="the prior Beta(alpha, beta): beta")
    update_interval_s: float = Field(description="seconds between ticks")
    decay: float = Field(description="evidence decay per tick, in (0, 1]; 1: none")
    target_event: str = Field(description="the decision metric's event type")
    exposure_source: ExposureSource = Field(description="server or client: who counts exposures")
    created_at: datetime = Field(description="when it was created (UTC)")
    last_tick_at: datetime | None = Field(
        description="when the last tick was applied (UTC); null before the first"
    )
    tick_count: int = Field(description="ticks recorded")
    window_arm_id: int | None = Field(
        description="window mode: the arm pinned for the current window; null in request mode"
    )
    arms: list[ArmOut] = Field(description="every arm, retired ones included")
    evolution: EvolutionSettingsOut = Field(
        description="the genetic step's settings in force: as given at creation with the "
        "defaults filled in, or, without settings, the defaults with enabled false and "
        "max_arms the number of active arms"
    )
    evolve_interval_s: float | None = Field(None, description="null unless scheduled steps run")
    last_evolved_at: datetime | None = Field(
        None, description="when the last genetic step ran (UTC); null before the first"
    )
    generation: int = Field(
        0, description="the last genetic step's generation number (0: none yet)"
    )
    attribution_window_s: float = Field(
        14_400.0,
        description="events count only within this many seconds of their ticket's assignment",
    )
    max_events_per_exposure: dict[str, int] = Field(
        default_factory=dict, description="in force: the defaults with the experiment's own"
    )
    nursery_exposures: float = Field(
        0.0, description="credited exposures an arm needs to leave the nursery; 0: no nursery"
    )
    nursery_share: float = Field(
        0.1, description="the share of the target group's draws the nursery arms get"
    )
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
    segments: SegmentsOut | None = Field(
        None, description="a segmented experiment's segments; null when not segmented"
    )
    assignment: AssignmentOut = Field(
        default_factory=lambda: AssignmentOut(sticky=False),
        description="how a target unit's arm is chosen",
    )


class ExperimentSummary(BaseModel):
    id: int = Field(description="the experiment's id")
    name: str = Field(description="the experiment's name")
    status: ExperimentStatus = Field(description="running, paused, stopped or archived")
    mode: Mode = Field(description="request or window")
    policy: str = Field(description="the bandit policy")
    active_arms: int = Field(description="active arms other than the reference")
    tick_count: int = Field(description="ticks recorded")
    created_at: datetime = Field(description="when it was created (UTC)")
    phase: int = Field(1, description="the current phase (1 until the reference changes)")


# Why a phase changed, or an admin note: free text, no NUL (PostgreSQL text cannot store it).
Note = Annotated[str, StringConstraints(max_length=1000, pattern=r"^[^\x00]*$")]


class PromoteIn(Strict):
    """Make an arm's configuration the reference configuration: a new phase."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"arm_id": 2, "reason": "the winner of the spring test, by +4% contacts"}]
        },
    )

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
    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "additionalProperties": False,
            "examples": [
                {
                    "update_interval_s": 30,
                    "nursery_exposures": 500,
                    "decisions": {"winner_p_best": 0.97},
                    "reason": "faster ticks while the new arms warm up",
                }
            ],
        },
    )

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

    number: int = Field(description="the phase number, from 1")
    started_at: datetime = Field(description="when it started (UTC)")
    ended_at: datetime | None = Field(description="null for the current phase")
    reference_arm_id: int = Field(description="the arm holding its reference configuration")
    reference_config: dict[str, Number] = Field(description="its reference configuration")
    reference_share: float = Field(description="its reference group's share of units")
    target_event: str = Field(description="its decision metric")
    trigger: PhaseTrigger = Field(
        description="create: the first phase; promote: an arm became the reference; "
        "settings: PATCH changed the reference configuration, share or decision metric"
    )
    reason: str | None = Field(
        description="the admin's reason for the change; null if none was given"
    )
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

    arm_id: int = Field(description="the arm's id")
    origin: Origin = Field(
        description=(
            "where the arm came from: reference, expert, manual, random, mutation, crossover "
            "or model"
        )
    )
    generation: int = Field(
        description="the experiment's generation when a genetic step or a phase change added "
        "it; 0 for a founder or an admin's arm"
    )
    status: ArmStatus = Field(
        description="active (drawn) or retired (kept with its history, never drawn again)"
    )
    config: dict[str, Number] = Field(
        description="the arm's configuration: parameter name -> value"
    )
    lift: float | None = Field(
        description="the arm's lift over the reference group: posterior median of its rate "
        "/ the reference rate - 1 (0.10 = +10%); 0 for the reference itself"
    )
    lift_ci_low: float | None = Field(description="95% credible interval of the lift")
    lift_ci_high: float | None = Field(description="upper end of the lift's 95% credible interval")
    prob_beat_reference: float | None = Field(
        description="posterior probability that the arm earns more target events per "
        "exposure than the reference group"
    )
    prob_best: float | None = Field(
        description="posterior probability that the arm is the best of the active arms"
    )
    exposures: float = Field(description="credited exposures in the current phase")
    target_events: float = Field(description="credited target events in the current phase")
    quarantined_events: float = Field(
        0.0, description="target events its tickets reported beyond the limits, not credited"
    )
    rate: float | None = Field(description="target events per exposure")
    alpha: float = Field(
        description="posterior Beta(alpha, beta) on the reference-ratio scale: alpha"
    )
    beta: float = Field(
        description="posterior Beta(alpha, beta) on the reference-ratio scale: beta"
    )
    posterior_mean: float | None = Field(
        description="alpha / (alpha + beta) on the reference-ratio scale, not a conversion "
        "rate: the arm's share of the pair (arm, reference); 1/2 means as good as the "
        "reference, and lift = posterior_mean / (1 - posterior_mean) - 1 (roughly)"
    )
    segments: list[str] | None = Field(
        None,
        description="segmented experiments: the segments the arm is served in; null: every segment",
    )
    served: bool = Field(
        True,
        description="false with ?segment= when the arm's segments do not include that "
        "segment: it is never drawn there (prob_best null)",
    )


class ExperimentStats(BaseModel):
    experiment: str = Field(description="the experiment's name")
    segment: str | None = Field(
        None,
        description="?segment=: the segment these statistics are of (posteriors are the "
        "segment's pooled ones, counts the segment's; quarantined events are not kept per "
        "segment and show 0); null: the whole experiment",
    )
    tick_count: int = Field(description="ticks recorded")
    reference_rate: float | None = Field(
        description=(
            "the reference group's target events per exposure in the "
            "current phase; null without exposures"
        )
    )
    arms: list[ArmStats] = Field(description="every arm with its statistics")
    prob_best_draws: int = Field(
        description="joint posterior draws behind prob_best: as requested, or fewer when "
        "draws x active arms would exceed the server's bound"
    )
    prob_best_draws_requested: int = Field(description="the draws asked for (?draws=)")
    seed: int = Field(
        description=(
            "the seed of the Monte Carlo draws (?seed=): the same seed repeats prob_best exactly"
        )
    )


class TickArmOut(BaseModel):
    arm_id: int = Field(description="the arm's id")
    exposures: float = Field(description="exposures credited in this window")
    target_events: float = Field(description="target events credited in this window")
    alpha_increment: float = Field(description="added to alpha by this tick")
    beta_increment: float = Field(description="added to beta by this tick")
    alpha_before: float = Field(description="alpha before this tick")
    beta_before: float = Field(description="beta before this tick")
    alpha_after: float = Field(description="alpha after this tick")
    beta_after: float = Field(description="beta after this tick")
    quarantined_events: float = Field(
        0.0, description="target events beyond the limits, stored but not credited"
    )


class TickOut(BaseModel):
    id: int = Field(description="the tick's id")
    number: int = Field(description="the tick's number in the experiment, from 1")
    created_at: datetime = Field(description="when it was applied (UTC)")
    applied: bool = Field(
        description="false when the window had no reference exposure: its counts are shown "
        "but were carried forward, so the next applied tick counts them (sum applied ticks only)"
    )
    mode: Mode = Field(description="request or window")
    decay: float = Field(description="the decay applied before the update")
    reference_exposures: float = Field(description="the reference group's exposures in the window")
    reference_events: float = Field(description="the reference group's target events in the window")
    target_exposures: float = Field(description="the target group's exposures in the window")
    target_events: float = Field(description="the target group's target events in the window")
    window_arm_id: int | None = Field(
        description="window mode: the arm pinned in this window; null in request mode"
    )
    next_window_arm_id: int | None = Field(
        description="window mode: the arm pinned for the next window; null in request mode"
    )
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
    arms: list[TickArmOut] = Field(
        description="per arm: counts, increments and posteriors before and after"
    )


class AuditOut(BaseModel):
    id: int = Field(description="the entry's id, increasing")
    at: datetime = Field(description="when it happened (UTC)")
    actor: str = Field(
        description=(
            "who acted: admin, scheduler, or decisions (guardrails, circuit breaker, winner)"
        )
    )
    action: str = Field(
        description="what was done, e.g. experiment.create, arm.add, experiment.promote"
    )
    experiment_id: int | None = Field(
        description="the experiment's id; null for actions on no experiment"
    )
    details: dict[str, Any] = Field(
        description="the action's particulars (before and after for settings)"
    )
    token: str | None = Field(
        None,
        description="which token acted: '<name> (<prefix>)' of a stored token, "
        "'RANKTUNE_ADMIN_TOKEN' for the bootstrap admin token; null for the scheduler",
    )


class TokenCreate(Strict):
    """A new stored token (admin only); its secret is in the answer, and only there."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"name": "grafana-readonly", "role": "viewer"}]},
    )

    name: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$",
        description="what the token is for (letters, digits, space, '.', '_', '-'; up to 64 "
        "characters); shown in lists and in the audit log",
    )
    role: Role = Field(
        description="admin: everything; viewer: the admin API's GET routes (but webhooks and "
        "tokens) and the dashboard read-only; client: the client routes when "
        "RANKTUNE_CLIENT_KEY_REQUIRED is on"
    )


class TokenOut(BaseModel):
    id: int = Field(description="the token's id (DELETE /v1/tokens/{id} revokes it)")
    name: str = Field(description="what the token is for")
    role: Role = Field(description="admin, viewer or client")
    prefix: str = Field(description="the token's first characters, not secret: recognise it")
    created_at: datetime = Field(description="when it was created")
    revoked_at: datetime | None = Field(description="when it was revoked; null while active")
    last_used_at: datetime | None = Field(
        description="about when it was last used (written about once a minute); null: never"
    )


class TokenCreated(TokenOut):
    token: str = Field(
        description="the secret token, shown only in this answer (only its SHA-256 is kept)"
    )


class Assignment(BaseModel):
    experiment: str = Field(description="the experiment's name")
    group: Literal["target", "reference"] = Field(
        description="target (drawn by the bandit) or reference (the reference configuration)"
    )
    arm_id: int = Field(description="the arm served")
    config: dict[str, Number] = Field(
        description="the configuration to rank with: parameter name -> value"
    )
    ticket: str = Field(
        description=(
            "attach it to the events that follow (POST /v1/events); valid"
            " for the experiment's attribution_window_s"
        )
    )
    active: bool = Field(
        description="false while the experiment is paused or stopped, and for a target unit "
        "of a segment where no target arm is served (every active arm restricted to other "
        "segments): the reference configuration, on a ticket that counts nothing"
    )


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
    schema["examples"] = [
        {
            "events": [
                {
                    "ticket": TICKET_PLACEHOLDER,
                    "type": "contact",
                    "count": 1,
                    "event_id": "user-42-contact-1",
                }
            ]
        }
    ]
    return {
        "required": True,
        "description": "a batch of events; in the example, the ticket stands for the `ticket` "
        "of an assignment (GET /v1/experiments/{name}/assignment)",
        "content": {"application/json": {"schema": schema}},
    }


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
    arm_id: int = Field(description="the arm's id")
    alpha: float = Field(
        description="posterior Beta(alpha, beta) on the reference-ratio scale: alpha"
    )
    beta: float = Field(
        description="posterior Beta(alpha, beta) on the reference-ratio scale: beta"
    )
    exposures: float = Field(description="credited exposures, as of the snapshot")
    in_nursery: bool = Field(
        description="served on the nursery's schedule rather than by the policy"
    )


class SnapshotReference(BaseModel):
    arm_id: int = Field(description="the reference arm's id")
    config: dict[str, Number] = Field(
        description="the reference configuration: what the reference group gets, and what "
        "clients serve when they cannot reach ranktune (the client SDK's fallback)"
    )


class SnapshotOut(BaseModel):
    experiment: str = Field(description="the experiment's name")
    version: int = Field(
        description=(
            "the experiment's version the replica loaded; it moves with every tick and admin change"
        )
    )
    tick_count: int = Field(description="ticks recorded when loaded")
    status: str = Field(description="running, paused, stopped or archived")
    loaded_at: datetime = Field(description="when this replica loaded it (UTC)")
    exposure_source: ExposureSource = Field(
        description="'server': every assignment counts as an exposure; 'client': only the "
        "clients' 'exposure' events do"
    )
    reference: SnapshotReference = Field(description="the reference arm and configuration")
    arms: list[SnapshotArm] = Field(
        description=(
            "the active arms of the target group, with their posteriors "
            "(the reference is `reference`)"
        )
    )


# -- evolution -----------------------------------------------------------------------------
class ExpertConfigCreate(Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "config": {"text_match": 1.3, "distance": 0.7, "price_diff": 0.8, "region": 1},
                    "note": "more weight on the text, as for the search results",
                }
            ]
        },
    )

    config: ConfigIn = Field(
        description="parameter name -> value, for every parameter of the space, within its bounds"
    )
    # no NUL: PostgreSQL text cannot store it
    note: Annotated[str, StringConstraints(max_length=1000, pattern=r"^[^\x00]*$")] | None = Field(
        None, description="why this configuration (at most 1000 characters); kept with the entry"
    )


class ExpertConfigOut(BaseModel):
    id: int = Field(description="the entry's id")
    config: dict[str, Number] = Field(description="the configuration queued")
    note: str | None = Field(description="the expert's note")
    status: ExpertStatus = Field(
        description=(
            "waiting, consumed (a step added it), rejected (a step found "
            "it a duplicate or invalid) or withdrawn"
        )
    )
    submitted_at: datetime = Field(description="when it was queued (UTC)")
    resolved_at: datetime | None = Field(
        description="when it stopped waiting (UTC); null while waiting"
    )
    generation: int | None = Field(
        description="the genetic step that took it; null while waiting or withdrawn"
    )
    consumed_by_arm_id: int | None = Field(description="the arm it became; null unless consumed")
    detail: str | None = Field(
        description="why it was rejected, or what became of it; null while waiting"
    )


class RetiredArmOut(BaseModel):
    arm_id: int = Field(description="the arm's id")
    config: dict[str, Number] = Field(
        description="the arm's configuration: parameter name -> value"
    )
    reason: RetirementReason | Literal["guardrail"] = Field(
        description="lowest_score: among the drop_count worst; over_max_arms: retired "
        "beyond them because the arm set held more than max_arms; guardrail: confidently "
        "worse than the reference on a guardrail metric beyond its max_loss (`guardrail` "
        "has the numbers)"
    )
    score: float | None = Field(
        description="the ranking score: posterior mean or P(best); null for a guardrail"
    )
    exposures: float = Field(description="its credited exposures")
    prob_beat_reference: float = Field(
        description="posterior probability that it beats the reference"
    )
    alpha: float = Field(description="its final posterior Beta(alpha, beta): alpha")
    beta: float = Field(description="its final posterior Beta(alpha, beta): beta")
    guardrail: dict[str, Any] | None = Field(
        None,
        description="a guardrail retirement's evidence: the metric, its max_loss and the "
        "report row (effect, intervals, counts) that tripped it",
    )


class ModelPredictionOut(BaseModel):
    """What the surrogate model expected of a configuration it proposed."""

    mean: float = Field(
        description="expected theta on the reference-ratio scale (0.5: as good as the reference)"
    )
    sd: float = Field(description="the surrogate's standard deviation of theta there")
    ratio: float = Field(description="expected rate relative to the reference's: mean / (1 - mean)")
    expected_improvement: float = Field(
        description="the acquisition value that chose it: expected gain of theta over the "
        "best arm served"
    )


class ModelRunOut(BaseModel):
    """The surrogate model a genetic step fitted, and the data it saw."""

    model: str = Field(description="the model and acquisition rule (gp-matern52-ei)")
    data_version: str = Field(
        description="digest of the data it was fitted on (each served arm's configuration and "
        "posterior): the same data gives the same version"
    )
    n_observations: int = Field(description="arms it learnt from, the reference included")


class AddedArmOut(BaseModel):
    arm_id: int | None = Field(description="null in a dry run")
    config: dict[str, Number] = Field(
        description="the arm's configuration: parameter name -> value"
    )
    origin: Origin = Field(description="expert, random, mutation, crossover or model")
    parent_ids: list[int] = Field(
        description="the arms it came from: one for a mutation or a promoted reference, two "
        "for a crossover; empty for the others"
    )
    alpha: float = Field(description="its starting posterior Beta(alpha, beta)")
    beta: float = Field(description="its starting posterior Beta(alpha, beta): beta")
    expert_config_id: int | None = Field(description="the queue entry it came from (experts)")
    prediction: ModelPredictionOut | None = Field(
        None, description="what the surrogate model expected of it (model arms); else null"
    )


class RankedArmOut(BaseModel):
    """An active non-reference arm as the step ranked it."""

    arm_id: int = Field(description="the arm's id")
    score: float = Field(description="the ranking score: posterior mean or P(best)")
    mean: float = Field(description="posterior mean")
    prob_beat_reference: float = Field(
        description="posterior probability that it beats the reference"
    )
    exposures: float = Field(description="credited exposures in the current phase")
    eligible: bool = Field(
        description="false for a young arm (fewer than min_exposures): never ranked among "
        "the eligible nor retired"
    )


class SkippedSlotOut(BaseModel):
    """A planned addition that produced no arm, and why."""

    origin: Origin = Field(description="the addition planned: random, mutation, crossover or model")
    parent_ids: list[int] = Field(description="the parents it was bred from (empty for random)")
    attempts: int = Field(description="draws tried before giving up")
    reason: str = Field(description="why no arm came of it, in words")


class ExpertOutcomeOut(BaseModel):
    """What the step did with one entry of the expert queue it consumed."""

    queue_index: int = Field(description="its position among the waiting entries")
    status: Literal["added", "duplicate", "invalid"] = Field(
        description=(
            "added (an arm now), duplicate (equal to an active arm) or invalid (outside the space)"
        )
    )
    detail: str = Field(description="what happened, in words")
    expert_config_id: int = Field(description="the queue entry")


class GenerationDetailsOut(BaseModel):
    """The rest of a step's plan, as recorded with its generation. A guardrail
    retirement (trigger "guardrail") ranks nothing: ``score`` and ``seed`` are null, the
    lists empty, and ``notes`` says what tripped."""

    score: ScoreKind | None = Field(
        description="how arms were ranked (null for a guardrail retirement)"
    )
    best_arm_id: int | None = Field(
        description="the best eligible arm, never retired; null without one"
    )
    ranking: list[RankedArmOut] = Field(description="eligible arms best first, then young ones")
    skipped: list[SkippedSlotOut] = Field(description="planned additions that produced no arm")
    expert_outcomes: list[ExpertOutcomeOut] = Field(
        description="what became of each expert configuration taken from the queue"
    )
    n_active_before: int = Field(description="active arms before the step")
    n_active_after: int = Field(description="active arms after it")
    notes: list[str] = Field(description="remarks in words")
    seed: int | None = Field(description="the step's seed (null for a guardrail retirement)")
    settings: EvolutionSettingsOut | None = Field(
        description="the settings in force (null in generations recorded before they were "
        "kept for experiments created without evolution settings)"
    )
    model: ModelRunOut | None = Field(
        None, description="the surrogate model the step fitted; null when it proposed nothing"
    )


class EvolutionStepOut(BaseModel):
    experiment: str = Field(description="the experiment's name")
    dry_run: bool = Field(description="true: a preview, nothing changed")
    applied: bool = Field(description="the arm set changed and a generation was recorded")
    generation: int | None = Field(description="the generation recorded (or previewed)")
    seed: int = Field(description="pass it back as ?seed= to repeat exactly this step")
    score: ScoreKind = Field(description="how arms were ranked: mean or prob_best")
    best_arm_id: int | None = Field(
        description="the best eligible arm, never retired; null without eligible arms"
    )
    retired: list[RetiredArmOut] = Field(description="the arms retired (or that would be)")
    added: list[AddedArmOut] = Field(description="the arms added (or that would be)")
    ranking: list[RankedArmOut] = Field(description="eligible arms best first, then young ones")
    skipped: list[SkippedSlotOut] = Field(description="planned additions that produced no arm")
    expert_outcomes: list[ExpertOutcomeOut] = Field(
        description="what became of each expert configuration the step took from the queue"
    )
    n_active_before: int = Field(description="active arms before the step")
    n_active_after: int = Field(description="active arms after it")
    notes: list[str] = Field(description="remarks in words (why nothing retired, ...)")
    settings: EvolutionSettingsOut = Field(description="the settings the step used")
    model: ModelRunOut | None = Field(
        description="the surrogate model the step fitted; null when it proposed nothing"
    )


class GenerationOut(BaseModel):
    number: int = Field(description="the generation number, from 1")
    created_at: datetime = Field(description="when the step was applied (UTC)")
    trigger: str = Field(description="what ran it: admin, schedule or guardrail")
    replica: str | None = Field(description="the replica that applied it; null if unknown")
    retired: list[RetiredArmOut] = Field(description="the arms it retired")
    added: list[AddedArmOut] = Field(description="the arms it added")
    details: GenerationDetailsOut = Field(description="the ranking and the rest of the step's plan")


class AncestorOut(ArmOut):
    depth: int = Field(description="1 for a parent, 2 for a grandparent, ...")


class ModelProvenanceOut(BaseModel):
    """Where a model arm came from: the step's model, its data and what it expected."""

    generation: int = Field(description="the generation that added the arm")
    run: ModelRunOut = Field(description="the surrogate model and the data version")
    prediction: ModelPredictionOut = Field(description="what it expected of the arm")


class LineageOut(BaseModel):
    arm: ArmOut = Field(description="the arm asked about")
    ancestors: list[AncestorOut] = Field(description="breadth first, each arm once")
    founder_ids: list[int] = Field(description="ancestors (or the arm itself) without parents")
    model: ModelProvenanceOut | None = Field(
        None, description="for a model arm: the model, data version and prediction; else null"
    )


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
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "url": "https://hooks.example.com/ranktune",
                    "experiment": "similar-items",
                    "events": ["guardrail_tripped", "circuit_breaker", "winner"],
                }
            ]
        },
    )

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
    id: int = Field(description="the webhook's id")
    url: str = Field(description="where notifications are POSTed")
    experiment: str | None = Field(description="null: every experiment")
    events: list[NotificationKind] | None = Field(description="null: every kind")
    active: bool = Field(description="false once deleted (its deliveries are kept)")
    secret_hint: str = Field(description="the secret's last 4 characters, after '...'")
    created_at: datetime = Field(description="when it was registered (UTC)")
    deactivated_at: datetime | None = Field(
        description="when it was deleted (UTC); null while active"
    )


class WebhookCreated(WebhookOut):
    secret: str = Field(description="the signing key; this is the only answer that shows it")


class NotificationOut(BaseModel):
    id: int = Field(description="the notification's id, increasing")
    experiment: str | None = Field(description="the experiment it is about; null for none (a ping)")
    kind: NotificationKind = Field(
        description=(
            "what happened: guardrail_tripped, circuit_breaker, srm, winner, phase_changed or ping"
        )
    )
    created_at: datetime = Field(description="when it was recorded (UTC)")
    payload: dict[str, Any] = Field(description="the particulars, as sent to webhooks")


class DeliveryOut(BaseModel):
    id: int = Field(description="sent as the body's id and X-Ranktune-Delivery")
    webhook_id: int = Field(description="the webhook it is sent to")
    notification_id: int = Field(description="the notification it carries")
    experiment: str | None = Field(description="the notification's experiment; null for none")
    kind: NotificationKind = Field(description="the notification's kind")
    payload: dict[str, Any] = Field(description="the notification's data, as sent in the body")
    status: DeliveryStatus = Field(
        description="pending (waiting for an attempt), delivered (2xx), failed (4xx other "
        "than 429, a redirect, or out of attempts), cancelled (the webhook was deleted)"
    )
    attempts: int = Field(
        description="attempts made so far (at most RANKTUNE_WEBHOOK_MAX_ATTEMPTS)"
    )
    last_status_code: int | None = Field(
        description="the receiver's HTTP status at the last attempt; null: no answer"
    )
    last_error: str | None = Field(description="why the last attempt did not deliver")
    created_at: datetime = Field(description="when it was queued (UTC)")
    last_attempt_at: datetime | None = Field(
        description="when it was last tried (UTC); null before the first attempt"
    )
    next_attempt_at: datetime | None = Field(description="null once the delivery is over")
    finished_at: datetime | None = Field(
        description="when it was delivered, failed or cancelled (UTC); null while pending"
    )


# -- the experiment report -----------------------------------------------------------------
class ReportMetricOut(BaseModel):
    event: str = Field(description="the event type")
    role: MetricRole = Field(description="decision, secondary or guardrail")
    direction: Direction = Field(description="increase or decrease: which way is better")
    max_loss: float | None = Field(description="guardrails: the tolerated relative loss")
    since: datetime | None = Field(
        description="when it became a metric of the experiment (the decision metric: the "
        "experiment's creation); its counts in a phase start at the later of this and the "
        "phase's start"
    )


class ReportRowOut(BaseModel):
    """One metric, one treatment against the reference group (docs/statistics.md)."""

    metric: str = Field(description="the event type")
    role: MetricRole = Field(description="decision, secondary or guardrail")
    direction: Direction = Field(description="increase or decrease: which way is better")
    treatment: str | int = Field(description='"bandit" for the whole target group, or an arm id')
    control_mean: float | None = Field(description="the reference group's events per exposure")
    treatment_mean: float | None = Field(description="the treatment's events per exposure")
    effect: float | None = Field(description="treatment_mean / control_mean - 1 (0.10 = +10%)")
    lower: float | None = Field(description="fixed-horizon interval of the effect (1 - alpha)")
    upper: float | None = Field(description="upper end of the fixed-horizon interval")
    p_value: float | None = Field(description="fixed horizon, H0: effect = 0")
    significant: bool = Field(description="p_value < alpha (valid at one planned look)")
    lower_anytime: float | None = Field(
        description="always-valid interval (confidence sequence): valid however often the "
        "report is read"
    )
    upper_anytime: float | None = Field(description="upper end of the always-valid interval")
    significant_anytime: bool = Field(description="the always-valid interval excludes 0")
    verdict: Literal["better", "worse", "unclear"] = Field(
        description="on the always-valid interval and the metric's direction"
    )
    control_events: float = Field(description="the reference group's events")
    control_exposures: float = Field(description="the reference group's exposures")
    treatment_events: float = Field(description="the treatment's events")
    treatment_exposures: float = Field(description="the treatment's exposures")
    reason: str | None = Field(description="why some fields are null")


class HealthCheckOut(BaseModel):
    check: Literal[
        "sample_ratio_mismatch", "reference_traffic", "scheduler", "exploration", "time_to_decision"
    ] = Field(
        description=(
            "which check: sample_ratio_mismatch, reference_traffic, "
            "scheduler, exploration or time_to_decision"
        )
    )
    status: Literal["ok", "warning", "failed"] = Field(description="ok, warning or failed")
    detail: str = Field(description="the evidence, in words")
    action: str = Field(description="what to do about it")
    evidence: dict[str, float | int | str | bool | None] = Field(
        default_factory=dict, description="the evidence, as numbers"
    )
    scope: Literal["experiment", "segment"] = Field(
        "experiment",
        description="experiment: computed from the whole experiment (every check of the "
        "overall report; reference_traffic and scheduler in a segment's report too); "
        "segment: from the reported segment's own counts and ticks",
    )


class SegmentSummaryOut(BaseModel):
    """One segment of a segmented experiment: its traffic and its best arm, from its pooled
    posteriors (as ``GET .../stats?segment=S&seed=0&draws=<draws>`` gives them)."""

    segment: str = Field(description="the segment's name")
    exposures: float = Field(
        description="the segment's credited exposures in the phase, every arm and the "
        "reference group"
    )
    share: float | None = Field(
        description="its share of the experiment's credited exposures (null before any)"
    )
    best_arm_id: int | None = Field(
        description="the active target arm with the highest P(best) in the segment (null "
        "without active target arms)"
    )
    prob_best: float | None = Field(description="that arm's P(best) in the segment")
    lift: float | None = Field(
        description="that arm's lift over the segment's reference group (posterior median)"
    )
    lift_ci_low: float | None = Field(description="its 95% credible interval's lower end")
    lift_ci_high: float | None = Field(description="its 95% credible interval's upper end")
    prob_beat_reference: float | None = Field(
        description="P(that arm beats the segment's reference group)"
    )


class SegmentsSummaryOut(BaseModel):
    opened: int = Field(description="the segments the experiment has opened ('default' included)")
    shown: list[SegmentSummaryOut] = Field(
        description="the overall report: the segments with the most traffic (at most 20, "
        "ties by index); a segment's report: that segment"
    )
    left_out: int = Field(
        description="segments with traffic not shown (beyond the 20, or not the reported one)"
    )
    seed: int = Field(description="seed of the Monte Carlo draws behind prob_best")
    draws: int = Field(description="joint posterior draws behind prob_best")


class ReportArmOut(BaseModel):
    id: int = Field(description="the arm's id, unique across experiments")
    origin: Origin = Field(
        description=(
            "where the arm came from: reference, expert, manual, random, mutation, crossover "
            "or model"
        )
    )
    status: ArmStatus = Field(
        description="active (drawn) or retired (kept with its history, never drawn again)"
    )
    reference: bool = Field(description="true for the reference arm")
    config: dict[str, Number] = Field(
        description="the arm's configuration: parameter name -> value"
    )
    generation: int = Field(
        description="the experiment's generation when a genetic step or a phase change added "
        "it; 0 for a founder or an admin's arm"
    )
    parent_ids: list[int] = Field(
        description="the arms it came from: one for a mutation or a promoted reference, two "
        "for a crossover; empty for the others"
    )
    created_at: datetime = Field(description="when the arm was added (UTC)")
    retired_at: datetime | None = Field(
        description="when the arm was retired (UTC); null while active"
    )
    retired_reason: str | None = Field(
        description="why it was retired (an admin, a genetic step, a guardrail); null while active"
    )


class ReportOut(BaseModel):
    experiment: str = Field(description="the experiment's name")
    phase: int = Field(description="the phase reported")
    current_phase: int = Field(description="the experiment's current phase")
    status: ExperimentStatus = Field(description="the experiment's status")
    generated_at: datetime = Field(description="when the report was computed (UTC)")
    alpha: float = Field(description="1 - the intervals' confidence level (?alpha=)")
    min_events: float = Field(
        description="below this many events in a group, no interval or p-value"
    )
    planned_exposures: float = Field(
        description="where the always-valid interval is tightest (exposures of the smaller "
        "group); validity does not depend on it"
    )
    reference_arm_id: int = Field(description="the reference arm of the phase reported")
    metrics: list[ReportMetricOut] = Field(
        description="the decision metric first, then the secondary and guardrail metrics"
    )
    arms: list[ReportArmOut] = Field(description="the reference and every arm with a row")
    rows: list[ReportRowOut] = Field(
        description="one row per metric and treatment (the bandit group, then each arm)"
    )
    health: list[HealthCheckOut] = Field(description="the health checks, with what to do")
    segment: str | None = Field(
        None,
        description="the segment reported (?segment=): its counts, its reference group, "
        "its checks; null: the whole experiment (the sum over segments)",
    )
    segments: SegmentsSummaryOut | None = Field(
        None,
        description="a segmented experiment's current phase: which arm is best in each "
        "segment; null for unsegmented experiments and earlier phases",
    )


class ReportSnapshotSummaryOut(BaseModel):
    id: int = Field(description="the snapshot's id")
    phase: int = Field(description="the phase it reports")
    created_at: datetime = Field(description="when it was stored (UTC)")
    trigger: str = Field(description="what was decided: guardrail, circuit_breaker, ...")
    detail: dict[str, Any] = Field(
        description="the decision's particulars (the arm, the metric, the numbers)"
    )


class ReportSnapshotOut(ReportSnapshotSummaryOut):
    report: dict[str, Any] = Field(description="the report as it stood then")


class CandidateIn(BaseModel):
    """The allocation policy to evaluate on the experiment's recorded windows."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["arm", "mix", "uniform", "policy"] = Field(
        description="arm: always `arm_id`; mix: `weights` by arm id (normalised over each "
        "window's arms); uniform: every target arm alike; policy: `policy` with `params`, "
        "replayed on each window's posteriors"
    )
    arm_id: int | None = Field(None, ge=1, le=2**31 - 1, description="kind arm: the arm")
    weights: dict[int, float] | None = Field(
        None, description="kind mix: arm id -> weight (>= 0, at least one positive)"
    )
    policy: Literal["thompson", "ucb1", "egreedy", "edecay"] | None = Field(
        None, description="kind policy: the policy replayed (the experiment's prior)"
    )
    params: dict[Literal["epsilon", "c", "ucb_alpha"], float] | None = Field(
        None, description="kind policy: its constants (epsilon, c, ucb_alpha)"
    )

    @model_validator(mode="after")
    def _needs_its_field(self) -> CandidateIn:
        needed = {"arm": "arm_id", "mix": "weights", "policy": "policy"}.get(self.kind)
        if needed is not None and getattr(self, needed) is None:
            raise ValueError(f"candidate of kind {self.kind!r} needs `{needed}`")
        return self


class OffPolicyEvaluationIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"candidate": {"kind": "arm", "arm_id": 2}, "level": 0.95},
                {"candidate": {"kind": "policy", "policy": "egreedy", "params": {"epsilon": 0.2}}},
            ]
        },
    )

    candidate: CandidateIn = Field(description="the allocation to evaluate")
    clip: float | None = Field(
        None, gt=0, le=1e9, description="importance weights above this are cut to it (biased)"
    )
    level: float = Field(0.95, gt=0, lt=1, description="the intervals' confidence level")


class LiftOut(BaseModel):
    value: float = Field(description="the candidate's value over the reference rate, minus 1")
    low: float = Field(description="lower end of the interval (delta method)")
    high: float = Field(description="upper end of the interval")


class OffPolicyEstimateOut(BaseModel):
    estimator: str = Field(description="ips, snips or dr")
    value: float | None = Field(
        description="estimated target events per exposure (null: undefined, e.g. SNIPS when "
        "the candidate gives no weight to any logged exposure)"
    )
    standard_error: float | None = Field(description="its standard error (null: undefined)")
    low: float | None = Field(description="lower end of the normal interval")
    high: float | None = Field(description="upper end of the normal interval")
    level: float = Field(description="the interval's confidence level")
    samples: float = Field(description="target exposures used")
    effective_sample_size: float = Field(description="(sum w)^2 / sum w^2")
    max_weight: float = Field(description="the largest importance weight (after clipping)")
    clipped: float = Field(description="exposures whose weight was clipped")
    warnings: list[str] = Field(description="why the estimate may not be trusted")
    lift: LiftOut | None = Field(description="over the reference group of the same windows")


class ReferenceRateOut(BaseModel):
    exposures: float = Field(description="reference exposures in the windows used")
    rate: float | None = Field(description="their target events per exposure")


class OffPolicyEvaluationOut(BaseModel):
    experiment: str = Field(description="the experiment's name")
    candidate: dict[str, Any] = Field(description="the candidate evaluated")
    windows: int = Field(description="applied windows used")
    windows_skipped: dict[str, int] = Field(
        description="windows left out: without_propensities (before migration 0018), "
        "snapshot_changed (an admin action during the window)"
    )
    exposures_left_out: float = Field(
        description="exposures counted under an arm the window served with probability 0"
    )
    reference: ReferenceRateOut = Field(
        description="the reference group in the windows used: what the lift is over"
    )
    estimates: list[OffPolicyEstimateOut] = Field(
        description="ips, snips and dr; empty while no applied window has recorded "
        "propensities (windows 0)"
    )
    policy: str = Field(description="the experiment's own policy (the logging policy)")
