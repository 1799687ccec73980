"""Command-line options declared once, on the fields of a command's config dataclass.

A simulator command keeps its parameters in a frozen dataclass whose fields are declared
with :func:`option` (name, kind, default, help):

    @dataclass(frozen=True)
    class RegretConfig:
        horizon: int = option(10_000, integer(minimum=1), "steps T per run")

That one declaration gives

- the dataclass field and its default (the field's name is the parameter's name);
- the argparse option ``--horizon`` with its help and default (:func:`add_options`);
- the value read back from the parsed arguments (:func:`from_args`; an option left out
  keeps the field's default, or calls its default factory);
- its words in the ``reproduce:`` command line (:func:`command_line`), written so that
  parsing them gives the same value back;
- its value in the JSON parameters (:func:`parameters`, ``dataclasses.asdict``).

Fields declared without :func:`option` (the marketplace's hidden model, say) are recorded
in the JSON but are not on the command line: they keep their default.
"""

from __future__ import annotations

import argparse
import math
import shlex
from collections.abc import Callable, Sequence
from dataclasses import MISSING, Field, asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

import numpy as np

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T")
C = TypeVar("C", bound="DataclassInstance")

PROGRAM = "ranktune simulate"
_METADATA_KEY = "simulations.option"


@dataclass(frozen=True)
class Kind(Generic[T]):
    """How values of one type are read from and written to a command line.

    ``style`` is ``"value"`` for an option that takes an argument (``--runs 200``),
    ``"switch"`` for a boolean with a ``--no-`` form (``--evolve`` / ``--no-evolve``) and
    ``"flag"`` for a boolean that is off unless given (``--log-x``); the last two ignore
    ``parse`` and ``show``.
    """

    parse: Callable[[str], T]
    show: Callable[[T], str]
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    style: Literal["value", "switch", "flag"] = "value"


@dataclass(frozen=True)
class Alias(Generic[T]):
    """A second spelling of the same parameter, exclusive with the first one
    (``--preset ten-close`` instead of ``--arms 0.4,...``). ``command_line`` always writes
    the first spelling."""

    flag: str
    parse: Callable[[str], T]
    help: str
    metavar: str | None = None


@dataclass(frozen=True)
class Option(Generic[T]):
    """What :func:`option` attaches to a dataclass field."""

    kind: Kind[T]
    help: str
    flag: str | None = None
    alias: Alias[T] | None = None


def option(
    default: T,
    kind: Kind[T],
    help: str,
    *,
    flag: str | None = None,
    alias: Alias[T] | None = None,
) -> T:
    """A dataclass field that is also a command-line option (``--field-name`` unless
    ``flag`` says otherwise)."""
    result: T = field(default=default, metadata={_METADATA_KEY: Option(kind, help, flag, alias)})
    return result


def option_factory(
    factory: Callable[[], T],
    kind: Kind[T],
    help: str,
    *,
    flag: str | None = None,
) -> T:
    """Like :func:`option`, for a default computed when the option is left out (a fresh
    seed); the help should say what happens then."""
    result: T = field(default_factory=factory, metadata={_METADATA_KEY: Option(kind, help, flag)})
    return result


# --- the kinds ---------------------------------------------------------------------------


def float_repr(value: float) -> str:
    """``repr``: the shortest text that reads back as the same float (``5.0``, ``0.1``)."""
    return repr(float(value))


def float_short(value: float) -> str:
    """Like :func:`float_repr` without a trailing ``.0`` (``5``, ``0.1``): as exact, and
    the same as ``:g`` for the values people type (``6``, ``0.2``, ``100800``), where
    ``:g`` is exact; ``:g`` rounds ``0.123456789`` to ``0.123457``."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def integer(minimum: int | None = None) -> Kind[int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from error
        if minimum is not None and value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return Kind(parse, str)


def number(
    low: float | None = None,
    high: float = math.inf,
    *,
    open_low: bool = False,
    show: Callable[[float], str] = float_short,
) -> Kind[float]:
    """A float, finite and in ``[low, high]`` (``(low, high]`` with ``open_low``) when
    ``low`` is given; any float otherwise (the config then checks it)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from error
        if low is None:
            return value
        above = value > low if open_low else value >= low
        if not (math.isfinite(value) and above and value <= high):
            bracket = "(" if open_low else "["
            raise argparse.ArgumentTypeError(f"must be in {bracket}{low:g}, {high:g}], got {text}")
        return value

    return Kind(parse, show)


def choice(*values: str) -> Kind[str]:
    return Kind(str, str, choices=values)


def _text_of_path(value: Path | None) -> str:
    return "" if value is None else str(value)


PATH: Kind[Path] = Kind(Path, str)
OPTIONAL_PATH: Kind[Path | None] = Kind(Path, _text_of_path)
SWITCH: Kind[bool] = Kind(bool, str, style="switch")
FLAG: Kind[bool] = Kind(bool, str, style="flag")


def comma_separated(text: str) -> list[str]:
    """The non-empty, stripped items of ``a, b,c``."""
    return [item.strip() for item in text.split(",") if item.strip()]


def join(values: Sequence[T], show: Callable[[T], str]) -> str:
    return ",".join(show(v) for v in values)


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in comma_separated(text))
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from error


# A comma-separated list of numbers (e.g. arm qualities). The config checks the values
# (and says which one is wrong), so the parser only reads them.
FLOATS: Kind[tuple[float, ...]] = Kind(_floats, lambda values: join(values, float_short))


def fresh_seed() -> int:
    """A fresh 32-bit seed from the OS; the command reports it so that the run repeats."""
    return int(np.random.SeedSequence().generate_state(1)[0])


# --- what one declaration gives ----------------------------------------------------------


def declared(
    cls: type[DataclassInstance] | DataclassInstance,
) -> list[tuple[Field[Any], Option[Any]]]:
    """The fields of ``cls`` declared with :func:`option`, in order, with their options."""
    return [(f, f.metadata[_METADATA_KEY]) for f in fields(cls) if _METADATA_KEY in f.metadata]


def flag_of(f: Field[Any], declaration: Option[Any]) -> str:
    return declaration.flag or "--" + f.name.replace("_", "-")


def add_options(parser: argparse.ArgumentParser, cls: type[DataclassInstance]) -> None:
    """Add one argparse option per declared field of ``cls``.

    Options left out are absent from the parsed namespace (``argparse.SUPPRESS``), so that
    :func:`from_args` leaves them to the dataclass default; the help states that default.
    """
    for f, declaration in declared(cls):
        flag = flag_of(f, declaration)
        kind = declaration.kind
        help_text = declaration.help + _default_note(f, kind, declaration.help)
        common: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": help_text}
        if kind.style == "switch":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **common)
            continue
        if kind.style == "flag":
            parser.add_argument(flag, action="store_true", **common)
            continue
        value_options: dict[str, Any] = {
            "type": kind.parse,
            "choices": kind.choices,
            "metavar": kind.metavar or (None if kind.choices else _metavar(flag)),
        }
        alias = declaration.alias
        if alias is None:
            parser.add_argument(flag, **value_options, **common)
            continue
        group = parser.add_mutually_exclusive_group()
        group.add_argument(flag, **value_options, **common)
        group.add_argument(
            alias.flag,
            type=alias.parse,
            dest=f.name,
            default=argparse.SUPPRESS,
            metavar=alias.metavar or _metavar(alias.flag),
            help=alias.help,
        )


def from_args(cls: type[C], args: argparse.Namespace) -> C:
    """Build ``cls`` from the declared options in ``args`` (the config's own checks run)."""
    given = {f.name: getattr(args, f.name) for f, _ in declared(cls) if hasattr(args, f.name)}
    return cls(**given)


def command_line(command: str, config: DataclassInstance) -> str:
    """``ranktune simulate <command> --option value ...``: every declared field of
    ``config`` in order, so that the line parses back to an equal config."""
    words = [PROGRAM, command]
    for f, declaration in declared(config):
        flag = flag_of(f, declaration)
        value = getattr(config, f.name)
        style = declaration.kind.style
        if style == "switch":
            words.append(flag if value else "--no-" + flag.removeprefix("--"))
        elif style == "flag":
            words.extend([flag] if value else [])
        else:
            text = shlex.quote(declaration.kind.show(value))
            # argparse would read "-1e-05" or "-1,2" as an option; "--flag=-1e-05" it reads right.
            words.extend([f"{flag}={text}"] if text.startswith("-") else [flag, text])
    return " ".join(words)


def parameters(config: DataclassInstance) -> dict[str, Any]:
    """Every field of ``config``, declared or not, for the JSON results."""
    return asdict(config)


def _default_note(f: Field[Any], kind: Kind[Any], help_text: str) -> str:
    # A help text that speaks of its default itself (a drawn seed, "random") keeps its words.
    if "default" in help_text or kind.style == "flag" or f.default is MISSING:
        return ""
    if kind.style == "switch":
        return " (default: on)" if f.default else " (default: off)"
    return f" (default: {kind.show(f.default)})"


def _metavar(flag: str) -> str:
    return flag.removeprefix("--").replace("-", "_").upper()
