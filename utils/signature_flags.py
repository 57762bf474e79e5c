"""A constructor's typed keyword parameters as command-line flags, so that adding a
hyperparameter to a model or a data set is one edit: the constructor.

    class UNet(nn.Module):
        def __init__(self, num_classes: int, in_channels: int = 3, width: int = 16) -> None:

gives `python train.py --model_type unet --width 32`, listed by `-h` in the group "model unet".
Plain types only, so nothing clever is needed: int, float, str, bool (`--x` / `--no-x`),
`Literal[...]` (choices), `X | None`, and `tuple[X, ...]` / `list[X]` (several values).
Parameters the caller supplies itself (a model's `num_classes`, a data set's `list_path`)
are left out. Standard library only.
"""

import inspect
import typing
from argparse import ArgumentParser, BooleanOptionalAction
from collections.abc import Callable
from pathlib import Path
from types import NoneType, UnionType

from utils.errors import UserError

PLAIN_TYPES = (int, float, str)
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def flag_parameters(builder: Callable, supplied: tuple[str, ...]) -> list[inspect.Parameter]:
    """The parameters of `builder` (a class or a function) that become flags, in order."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p for p in inspect.signature(builder).parameters.values() if p.kind in kinds and p.name not in supplied]


def add_signature_flags(parser: ArgumentParser, title: str, builder: Callable, supplied: tuple[str, ...],
                        taken: dict[str, str]) -> list[str]:
    """Add a flag per parameter of `builder` to a group named `title`; returns their names.

    `taken` maps the names of the flags that exist already to their group, for the error a
    clashing parameter gets: a parameter named like an existing flag would silently receive
    that flag's value, so it is refused at start-up, naming both."""
    where = describe(builder)
    group = parser.add_argument_group(title, f"parameters of {where}")
    hints = type_hints(builder)
    names = []
    for param in flag_parameters(builder, supplied):
        if param.name in taken:
            raise UserError(f"{title}: the parameter {param.name!r} of {where} has the name of the flag "
                            f"--{param.name} ({taken[param.name]}); rename the parameter.")
        if param.default is inspect.Parameter.empty:
            raise UserError(f"{title}: the parameter {param.name!r} of {where} has no default; give it one "
                            f"(e.g. `{param.name}: int = 16`), so that --{param.name} can be left out.")
        group.add_argument(f"--{param.name}", default=param.default,
                           **flag_options(param.name, hints.get(param.name), param.default, where))
        names.append(param.name)
    return names


def flag_options(name: str, annotation: object, default: object, where: str) -> dict:
    """argparse keywords for one parameter: type, choices, nargs or a --x/--no-x switch."""
    kind = annotation if annotation is not None else type(default)
    kind, optional = without_none(kind)
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    shown = f"default: {'None' if default is None else '%(default)s'}"
    if kind is bool:  # `x: bool | None = None`: neither --x nor --no-x given leaves the choice to the code
        return {"action": BooleanOptionalAction,
                "help": shown if default is not None else f"default: unset, {where} chooses (see its docstring)"}
    if kind in PLAIN_TYPES:
        return {"type": kind, "help": f"{kind.__name__}; {shown}"}
    if origin is typing.Literal and all(isinstance(a, PLAIN_TYPES) for a in args):
        return {"type": type(args[0]), "choices": list(args), "help": shown}
    if origin in (tuple, list) and args and args[0] in PLAIN_TYPES and all(a in (args[0], Ellipsis) for a in args):
        return {"type": args[0], "nargs": "+", "help": f"one or more {args[0].__name__}; {shown}"}
    raise UserError(f"The parameter {name!r} of {where} has the type {kind!r}{' | None' if optional else ''}, "
                    "which no flag can hold: use int, float, str, bool, Literal[...], X | None or "
                    "tuple[X, ...] with X one of int, float, str.")


def without_none(kind: object) -> tuple[object, bool]:
    """`X | None` (or Optional[X]) -> (X, True); anything else -> (kind, False)."""
    if typing.get_origin(kind) in (typing.Union, UnionType):
        rest = [a for a in typing.get_args(kind) if a is not NoneType]
        if len(rest) == 1:
            return rest[0], True
    return kind, False


def call_with_flags(builder: Callable, values: dict[str, object], supplied: dict[str, object]) -> object:
    """`builder(**supplied, **flag values)`; several values become a tuple where the parameter
    is annotated as one (argparse gives lists)."""
    hints = type_hints(builder)
    kwargs = dict(supplied)
    for param in flag_parameters(builder, tuple(supplied)):
        value = values.get(param.name, param.default)
        kind, _ = without_none(hints.get(param.name))
        if typing.get_origin(kind) is tuple and isinstance(value, list):
            value = tuple(value)
        kwargs[param.name] = value
    return builder(**kwargs)


def type_hints(builder: Callable) -> dict[str, object]:
    """The resolved annotations of a function, or of a class's __init__."""
    target = builder.__init__ if inspect.isclass(builder) else builder
    try:
        return typing.get_type_hints(target)
    except (NameError, TypeError) as error:
        raise UserError(f"The annotations of {describe(builder)} cannot be read ({error}).") from None


def describe(builder: Callable) -> str:
    """`UNet (model/unet/model.py)`: where a user finds the constructor."""
    try:
        source = Path(inspect.getsourcefile(builder)).resolve().relative_to(PROJECT_ROOT).as_posix()
    except (TypeError, ValueError):
        source = builder.__module__
    return f"{builder.__qualname__} ({source})"
