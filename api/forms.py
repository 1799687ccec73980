"""The dashboard's forms as the admin API's request bodies.

A form only *spells* a request body: every field becomes the JSON value the API would
receive, and the body is then validated by the API's own models and use cases, so a form
gets exactly the API's errors (``field`` names the input to show it next to). Nothing here
decides what is valid.

A form value is text. It becomes a JSON number when it is spelled as one (the JSON number
grammar, so "1e3" is a number and "0x10" or "inf" are not), ``true``/``false`` for
checkboxes, and stays a string otherwise, so "abc" in a number field gets the API's
"expected a number, got a string". An empty field is left out: the API's default applies.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from api import schemas

Form = Mapping[str, Sequence[str]]
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?")
MAX_FORM_FIELDS = 4000
# Rows a create form shows beyond those filled in, and at most.
SPARE_PARAMETER_ROWS = 1
SPARE_ARM_ROWS = 1
MAX_PARAMETER_ROWS = 64
MAX_ARM_ROWS = 256


def parse_form(body: bytes) -> dict[str, list[str]]:
    """An ``application/x-www-form-urlencoded`` body (bounded in fields)."""
    return parse_qs(
        body.decode("utf-8", errors="replace"),
        keep_blank_values=True,
        max_num_fields=MAX_FORM_FIELDS,
    )


def first(form: Form, name: str, default: str = "") -> str:
    values = form.get(name)
    return values[0] if values else default


def json_value(text: str) -> Any:
    """What a form field's text is in a JSON body (see the module's docstring)."""
    stripped = text.strip()
    if _JSON_NUMBER.fullmatch(stripped):
        return json.loads(stripped)
    return stripped


def config_from_form(form: Form, names: Sequence[str], prefix: str) -> dict[str, Any]:
    """A configuration: ``<prefix><name>`` per parameter; empty fields are left out (the
    API then says which parameter is missing)."""
    config: dict[str, Any] = {}
    for name in names:
        text = first(form, f"{prefix}{name}")
        if text.strip():
            config[name] = json_value(text)
    return config


# -- the create form --------------------------------------------------------------------------
# Settings the create form shows, with the control each gets; defaults are the API's.
SELECT_SETTINGS: dict[str, tuple[str, ...]] = {
    "mode": ("request", "window"),
    "policy": ("thompson", "ucb1", "egreedy", "edecay"),
    "exposure_source": ("server", "client"),
}
NUMBER_SETTINGS = (
    "reference_share",
    "update_interval_s",
    "attribution_window_s",
    "prior_alpha",
    "prior_beta",
    "decay",
    "nursery_exposures",
    "nursery_share",
)
TEXT_SETTINGS = ("target_event", "salt")
POLICY_SETTINGS = ("epsilon", "c", "ucb_alpha")
EVOLUTION_SETTINGS = ("evolve_interval_s", "min_exposures", "drop_count", "min_arms", "max_arms")
PARAMETER_FIELDS = ("name", "type", "low", "high", "distribution", "step")
TYPED_PARAMETER_FIELDS = ("name", "low", "high", "step")


@dataclass(frozen=True)
class CreateForm:
    """A create form as submitted: its rows (to show again) and the body it spells."""

    parameters: list[dict[str, str]]
    configs: list[list[str]]  # row 0: the reference; then one row per founder arm
    body: dict[str, Any]
    values: dict[str, str]


def setting_default(name: str) -> Any:
    """The API's default of a create setting (``policy_params.x``, ``evolution.x`` too)."""
    if name in POLICY_SETTINGS:
        return schemas.PolicyParams.model_fields[name].default
    if name in EVOLUTION_SETTINGS:
        return schemas.EvolutionIn.model_fields[name].default
    default = schemas.ExperimentCreate.model_fields[name].default
    return getattr(default, "value", default)


def _rows(form: Form, prefix: str, fields: Sequence[str], limit: int) -> list[dict[str, str]]:
    rows = []
    for index in range(limit):
        if not any(f"{prefix}[{index}].{name}" in form for name in fields):
            break
        rows.append({name: first(form, f"{prefix}[{index}].{name}") for name in fields})
    return rows


def create_form(form: Form) -> CreateForm:
    """The create form's fields as ``POST /v1/experiments``'s body.

    Parameters are rows ``parameters[i].<field>``; configurations are a grid whose columns
    are the parameter rows: ``configs[r][i]`` is row ``r``'s value of parameter ``i`` (row
    0 the reference configuration, row ``k + 1`` founder arm ``k``). Empty rows at the end
    (the spare ones) are dropped; an empty row before a filled one is sent as it is, so
    that the API's error names it: ``parameters[i]`` is row ``i`` and ``arms[k]`` grid row
    ``k + 1``, always.
    """
    parameters = _trimmed(_rows(form, "parameters", PARAMETER_FIELDS, MAX_PARAMETER_ROWS))
    names = [row["name"].strip() for row in parameters]
    configs: list[list[str]] = []
    for r in range(MAX_ARM_ROWS + 1):
        if not any(f"configs[{r}][{i}]" in form for i in range(MAX_PARAMETER_ROWS)):
            break
        configs.append([first(form, f"configs[{r}][{i}]") for i in range(len(parameters))])
    while len(configs) > 1 and not any(cell.strip() for cell in configs[-1]):
        configs.pop()
    grid = [
        {names[i]: json_value(cell) for i, cell in enumerate(cells) if cell.strip() and names[i]}
        for cells in configs
    ]
    body: dict[str, Any] = {
        "name": first(form, "name").strip(),
        "parameters": [_parameter(row) for row in parameters],
        "reference_config": grid[0] if grid else {},
        "arms": grid[1:],
    }
    values = {name: first(form, name) for name in (*NUMBER_SETTINGS, *TEXT_SETTINGS)}
    for name in (*NUMBER_SETTINGS, *TEXT_SETTINGS):
        if values[name].strip():
            body[name] = json_value(values[name])
    for name in SELECT_SETTINGS:
        values[name] = first(form, name)
        if values[name]:
            body[name] = values[name]
    policy = {}
    for name in POLICY_SETTINGS:
        values[f"policy_params.{name}"] = text = first(form, f"policy_params.{name}")
        if text.strip():
            policy[name] = json_value(text)
    if policy:
        body["policy_params"] = policy
    values["evolution.enabled"] = first(form, "evolution.enabled")
    evolution: dict[str, Any] = {}
    for name in EVOLUTION_SETTINGS:
        values[f"evolution.{name}"] = text = first(form, f"evolution.{name}")
        if text.strip():
            evolution[name] = json_value(text)
    if values["evolution.enabled"] or evolution:
        body["evolution"] = {"enabled": bool(values["evolution.enabled"]), **evolution}
    return CreateForm(parameters, configs, body, values)


def _trimmed(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """Without the empty rows at the end (the selects always hold a value: not counted)."""
    while rows and not any(rows[-1][name].strip() for name in TYPED_PARAMETER_FIELDS):
        rows.pop()
    return rows


def _parameter(row: Mapping[str, str]) -> dict[str, Any]:
    parameter: dict[str, Any] = {}
    for name in PARAMETER_FIELDS:
        text = row.get(name, "")
        if text.strip():
            parameter[name] = text.strip() if name == "name" else json_value(text)
    return parameter


# -- the settings form (PATCH /v1/experiments/{name}) -------------------------------------------
# The settings that take effect at once (no new phase); the form shows the values in force.
PATCH_SETTINGS = ("update_interval_s", "attribution_window_s", "nursery_exposures", "nursery_share")
DECISION_NUMBERS = (
    "guardrail_min_exposures",
    "decision_max_loss",
    "winner_p_best",
    "winner_min_lift",
    "winner_sustain_s",
)

# The fields the settings form shows an error next to (the others' errors go under it).
SETTINGS_FIELDS = (
    *PATCH_SETTINGS,
    *(f"decisions.{name}" for name in DECISION_NUMBERS),
    "decisions.circuit_breaker",
    "reason",
)


def settings_patch(form: Form) -> dict[str, Any]:
    """The settings form as ``PATCH /v1/experiments/{name}``'s body.

    The form is shown filled in with the values in force, and a value equal to the one in
    force is no change (the API records nothing for it), so every filled field is sent; an
    empty one is left out (kept). The circuit breaker is a checkbox: unticked is ``false``.
    """
    body: dict[str, Any] = {}
    for name in PATCH_SETTINGS:
        text = first(form, name)
        if text.strip():
            body[name] = json_value(text)
    decisions: dict[str, Any] = {"circuit_breaker": bool(first(form, "decisions.circuit_breaker"))}
    for name in DECISION_NUMBERS:
        text = first(form, f"decisions.{name}")
        if text.strip():
            decisions[name] = json_value(text)
    body["decisions"] = decisions
    reason = first(form, "reason").strip()
    if reason:
        body["reason"] = reason
    return body


def field_id(api_field: str) -> str:
    """The HTML id of the input an API error's ``field`` names (``arms[1].x`` and
    ``reference_config.x`` are cells of the configurations grid; see the templates)."""
    return "f-" + re.sub(r"[^A-Za-z0-9_-]", "-", api_field)


# The README's example, offered to start from: four ranker weights, the experts'
# reference configuration and three candidate arms.
EXAMPLE_PARAMETERS = [
    {"name": "text_match", "type": "float", "low": "0", "high": "2"},
    {"name": "distance", "type": "float", "low": "0", "high": "2"},
    {"name": "price_diff", "type": "float", "low": "0", "high": "2"},
    {"name": "region", "type": "int", "low": "0", "high": "3"},
]
EXAMPLE_CONFIGS = [
    ["1.0", "1.0", "1.0", "1"],
    ["1.2", "0.8", "1.0", "1"],
    ["0.8", "1.2", "0.5", "2"],
    ["1.5", "0.5", "1.5", "0"],
]


def example_form() -> CreateForm:
    """The create form filled in with the README's example (named ``similar-items``)."""
    fields: dict[str, list[str]] = {"name": ["similar-items"], "reference_share": ["0.2"]}
    for index, parameter in enumerate(EXAMPLE_PARAMETERS):
        row = {"distribution": "uniform", "step": "", **parameter}
        for key, value in row.items():
            fields[f"parameters[{index}].{key}"] = [value]
    for r, cells in enumerate(EXAMPLE_CONFIGS):
        for i, cell in enumerate(cells):
            fields[f"configs[{r}][{i}]"] = [cell]
    return create_form(fields)
