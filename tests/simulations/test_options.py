"""``simulations.options``: one declaration gives the argparse option, the config value, the
``reproduce:`` words and the JSON parameter, and the reproduce line parses back to the same
config. A toy config exercises every kind of option; the three commands' configs are
checked the same way, through the real ``ranktune simulate`` parser, at the end.
"""

from __future__ import annotations

import argparse
import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulations.cli import build_parser
from simulations.marketplace import MarketplaceConfig
from simulations.options import (
    FLAG,
    OPTIONAL_PATH,
    SWITCH,
    Alias,
    Kind,
    add_options,
    choice,
    command_line,
    declared,
    float_repr,
    float_short,
    from_args,
    integer,
    join,
    number,
    option,
    option_factory,
    parameters,
)
from simulations.regret import RegretConfig
from simulations.seasonality import SeasonalityConfig

NAMED = {"pair": (0.25, 0.75), "trio": (0.1, 0.2, 0.3)}


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(","))


def _named(text: str) -> tuple[float, ...]:
    if text not in NAMED:
        raise argparse.ArgumentTypeError(f"unknown set {text!r}")
    return NAMED[text]


FLOATS: Kind[tuple[float, ...]] = Kind(_floats, lambda v: join(v, float_repr))
SEEDS_DRAWN: list[int] = []


def _drawn_seed() -> int:
    SEEDS_DRAWN.append(42)
    return 42


@dataclass(frozen=True)
class Toy:
    values: tuple[float, ...] = option(
        (0.5, 0.5), FLOATS, "the values", flag="--values", alias=Alias("--named", _named, "a set")
    )
    count: int = option(3, integer(minimum=1), "how many")
    rate: float = option(0.25, number(0.0, 1.0, open_low=True), "a rate")
    exact: float = option(5.0, number(show=float_repr), "written with repr")
    mode: str = option("fast", choice("fast", "slow"), "a choice")
    enabled: bool = option(True, SWITCH, "a switch")
    verbose: bool = option(False, FLAG, "a flag")
    seed: int = option_factory(_drawn_seed, integer(minimum=0), "drawn if omitted")
    hidden: dict[str, int] = field(default_factory=lambda: {"not": 1})  # no option


@dataclass(frozen=True)
class ToyOutput:
    where: Path | None = option(None, OPTIONAL_PATH, "where (default: nowhere)")  # noqa: RUF009


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="toy")
    add_options(parser, Toy)
    add_options(parser, ToyOutput)
    return parser


def _parse(argv: list[str]) -> Toy:
    return from_args(Toy, _parser().parse_args(argv))


def _reparse(config: Toy) -> Toy:
    words = shlex.split(command_line("toy", config))
    assert words[:3] == ["ranktune", "simulate", "toy"]
    return _parse(words[3:])


def test_every_declared_field_is_an_option_with_its_help_and_default() -> None:
    helps = {a.dest: a for a in _parser()._actions}
    assert [f.name for f, _ in declared(Toy)] == [
        "values", "count", "rate", "exact", "mode", "enabled", "verbose", "seed",
    ]  # fmt: skip
    assert "hidden" not in helps
    assert helps["count"].option_strings == ["--count"]
    assert helps["count"].help == "how many (default: 3)"
    assert helps["rate"].help == "a rate (default: 0.25)"
    assert helps["exact"].help == "written with repr (default: 5.0)"
    assert helps["enabled"].option_strings == ["--enabled", "--no-enabled"]
    assert helps["enabled"].help == "a switch (default: on)"
    assert helps["verbose"].help == "a flag"
    assert helps["seed"].help == "drawn if omitted"  # a computed default is not shown
    assert helps["where"].help == "where (default: nowhere)"  # the help speaks of it already
    text = _parser().format_help()
    assert "--values VALUES" in text and "--named NAMED" in text
    assert "--mode {fast,slow}" in text


def test_options_left_out_keep_the_dataclass_defaults() -> None:
    SEEDS_DRAWN.clear()
    config = _parse([])
    assert SEEDS_DRAWN == [42]  # the factory ran: the seed was left out
    assert config == Toy(seed=42)
    assert from_args(ToyOutput, _parser().parse_args([])) == ToyOutput(None)


def test_given_options_set_the_fields() -> None:
    argv = ["--values", "0.1,0.2", "--count", "7", "--rate", "1", "--exact", "2.5",
            "--mode", "slow", "--no-enabled", "--verbose", "--seed", "9"]  # fmt: skip
    assert _parse(argv) == Toy((0.1, 0.2), 7, 1.0, 2.5, "slow", False, True, 9)
    assert _parse(["--named", "trio", "--seed", "1"]).values == (0.1, 0.2, 0.3)


@pytest.mark.parametrize(
    "argv",
    [
        ["--values", "0.1", "--named", "pair"],  # the alias excludes the option
        ["--count", "0"],
        ["--count", "x"],
        ["--rate", "0"],
        ["--rate", "nan"],
        ["--mode", "medium"],
        ["--named", "quartet"],
    ],
)
def test_bad_values_are_argparse_errors(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _parse(argv)
    assert exit_info.value.code == 2
    assert "error: argument --" in capsys.readouterr().err


def test_command_line_writes_every_declared_field_in_order() -> None:
    config = Toy((0.1, 0.2), 7, 0.5, 2.0, "slow", False, True, 9)
    assert command_line("toy", config) == (
        "ranktune simulate toy --values 0.1,0.2 --count 7 --rate 0.5 --exact 2.0 --mode slow "
        "--no-enabled --verbose --seed 9"
    )
    # An alias is read, but the line always uses the first spelling.
    assert "--values 0.25,0.75 " in command_line("toy", _parse(["--named", "pair", "--seed", "1"]))
    # A flag that is off, and a switch that is on, are written as such.
    line = command_line("toy", Toy(seed=1))
    assert "--enabled " in line and "--verbose" not in line


def test_json_parameters_are_every_field_by_name() -> None:
    config = _parse(["--named", "trio", "--seed", "4"])
    recorded = json.loads(json.dumps(parameters(config)))
    assert recorded == {
        "values": [0.1, 0.2, 0.3], "count": 3, "rate": 0.25, "exact": 5.0, "mode": "fast",
        "enabled": True, "verbose": False, "seed": 4, "hidden": {"not": 1},
    }  # fmt: skip


@settings(max_examples=100, deadline=None)
@given(
    values=st.lists(st.floats(-1e300, 1e300, allow_nan=False), min_size=1, max_size=4),
    count=st.integers(min_value=1, max_value=2**62),
    rate=st.floats(min_value=0.0, max_value=1.0, exclude_min=True),
    exact=st.floats(allow_nan=False, allow_infinity=False),
    mode=st.sampled_from(["fast", "slow"]),
    enabled=st.booleans(),
    verbose=st.booleans(),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_the_reproduce_line_parses_back_to_the_same_config(
    values: list[float],
    count: int,
    rate: float,
    exact: float,
    mode: str,
    enabled: bool,
    verbose: bool,
    seed: int,
) -> None:
    config = Toy(tuple(values), count, rate, exact, mode, enabled, verbose, seed)
    again = _reparse(config)
    assert again == config
    assert parameters(again) == parameters(config)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_float_texts_are_exact(value: float) -> None:
    assert float(float_repr(value)) == value
    assert float(float_short(value)) == value
    assert not float_short(value).endswith(".0")


def test_values_that_look_like_options_are_written_with_an_equals_sign() -> None:
    # argparse reads "-1e-05" as an option, not as a number; "--exact=-1e-05" is unambiguous.
    config = Toy((-0.5, 1e-05), 1, 1.0, -1e-05, seed=0)
    line = command_line("toy", config)
    assert "--values=-0.5,1e-05 " in line and "--exact=-1e-05 " in line
    assert _reparse(config) == config


def test_float_short_is_what_g_prints_for_short_values() -> None:
    # The marketplace's reproduce line used :g; it reads the same for the values people type.
    for value in (6.0, 600.0, 0.2, 0.05, 8.0, 0.3, 30.0, 100_800.0, 1e-5, 1e16, 12.5):
        assert float_short(value) == f"{value:g}"
    # ... and stays exact where :g rounded.
    assert f"{0.123456789:g}" == "0.123457"
    assert float_short(0.123456789) == "0.123456789"
    assert float_short(1_234_567.0) == "1234567"


# --- the three commands ----------------------------------------------------------------------


def _command_config(command: str, argv: list[str]) -> object:
    args = build_parser().parse_args([command, *argv])
    classes: dict[str, type[RegretConfig | SeasonalityConfig | MarketplaceConfig]] = {
        "regret": RegretConfig,
        "seasonality": SeasonalityConfig,
        "marketplace": MarketplaceConfig,
    }
    return from_args(classes[command], args)


@pytest.mark.parametrize(
    ("command", "argv"),
    [
        ("regret", ["--seed", "1"]),
        ("regret", ["--preset", "ten-close", "--horizon", "500", "--runs", "7", "--seed", "3",
                    "--policies", "thompson,ucb1", "--epsilon", "0.05", "--c", "2.5",
                    "--ucb-alpha", "1.5", "--prior-alpha", "0.5", "--prior-beta", "2",
                    "--checkpoints", "50"]),
        ("seasonality", []),
        ("seasonality", ["--arms", "1,1.2,0.8", "--days", "0.25", "--window-minutes", "7.5",
                         "--runs", "3", "--seed", "11", "--base-rate", "0.0123456789",
                         "--peak-to-trough", "2.5", "--peak-hour", "19.5", "--start-hour", "20",
                         "--requests-per-day", "1234567", "--reference-share", "0.3",
                         "--decay", "0.99", "--draws-per-window", "8", "--modes", "window",
                         "--feeds", "ratio,raw", "--smooth-hours", "1.5"]),
        ("marketplace", ["--seed", "1"]),
        ("marketplace", ["--hours", "0.123456789", "--views-per-minute", "200", "--seed", "3",
                         "--arms", "8", "--no-evolve", "--evolve-minutes", "2",
                         "--tick-seconds", "30", "--reference-share", "0.25", "--mode", "window",
                         "--users", "99", "--start-hour", "23.5", "--cycle-amplitude", "0",
                         "--bin-minutes", "3", "--grid-steps", "4"]),
    ],
)  # fmt: skip
def test_each_commands_reproduce_line_parses_back_to_the_same_config(
    command: str, argv: list[str]
) -> None:
    config = _command_config(command, argv)
    assert isinstance(config, RegretConfig | SeasonalityConfig | MarketplaceConfig)
    line = command_line(command, config)
    words = shlex.split(line)
    assert words[:3] == ["ranktune", "simulate", command]
    again = _command_config(command, words[3:])
    assert again == config
    assert json.dumps(parameters(again)) == json.dumps(parameters(config))
    # The line names every declared option, so that it does not depend on today's defaults.
    flags = [w for w in words if w.startswith("--")]
    assert len(flags) == len(declared(type(config)))


def test_a_seed_left_out_is_drawn_and_written_in_the_reproduce_line() -> None:
    first = _command_config("regret", [])
    second = _command_config("regret", [])
    assert isinstance(first, RegretConfig) and isinstance(second, RegretConfig)
    assert first.seed != second.seed  # 1 chance in 2**32 of a false failure
    assert f"--seed {first.seed} " in command_line("regret", first)
    assert 0 <= first.seed < 2**32
