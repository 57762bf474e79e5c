"""A constructor's typed keyword parameters as command-line flags, so that adding a
hyperparameter to a model, a data set, a loss, an optimizer or a schedule is one edit: the
constructor.

    class UNet(nn.Module):
        \"\"\"...
        Args:
            width: channels of the first stage; each stage down doubles them
        \"\"\"
        def __init__(self, num_classes: int, in_channels: int = 3, width: int = 16) -> None:

gives `python train.py --model_type unet --width 32`, listed by `-h` in the group "model unet"
with the docstring's line as its help. Plain types only, so nothing clever is needed: int,
float, str, bool (`--x` / `--no-x`), `Literal[...]` (choices), `X | None`, `tuple[X, ...]` /
`list[X]` (several values) and `tuple[X, X]` (exactly two). Parameters the caller supplies
itself (a model's `num_classes`, a data set's `list_path`) are left out. Standard library only.
"""

import inspect
import re
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
    return add_shared_flags(parser, title, {"": builder}, supplied, taken)


def add_shared_flags(parser: ArgumentParser, title: str, builders: dict[str, Callable], supplied: tuple[str, ...],
                     taken: dict[str, str], group: object | None = None) -> list[str]:
    """The flags of several builders of one registry in one group (the losses: which one a run
    trains with is known only once its data tells the task). A parameter several builders
    have is one flag, their annotations must agree; it defaults to None, which `builder_kwargs`
    turns into each builder's own default. Returns the flags' names. `group`: an argument
    group to add them to (default: a new one named `title`)."""
    owners: dict[str, list[tuple[str, Callable, inspect.Parameter]]] = {}
    for name, builder in builders.items():
        for param in flag_parameters(builder, supplied):
            owners.setdefault(param.name, []).append((name, builder, param))
    if group is None:
        group = parser.add_argument_group(title, f"parameters of {', '.join(describe(b) for b in builders.values())}")
    for flag, entries in owners.items():
        name, builder, param = entries[0]
        where = describe(builder)
        if flag in taken:
            raise UserError(f"{title}: the parameter {flag!r} of {where} has the name of the flag --{flag} "
                            f"({taken[flag]}); rename the parameter.")
        for _, other, other_param in entries:
            if param.default is inspect.Parameter.empty or other_param.default is inspect.Parameter.empty:
                raise UserError(f"{title}: the parameter {flag!r} of {describe(other)} has no default; give it one "
                                f"(e.g. `{flag}: int = 16`), so that --{flag} can be left out.")
            if type_hints(other).get(flag) != type_hints(builder).get(flag):
                raise UserError(f"{title}: the parameter {flag!r} has two types, in {where} and {describe(other)}; "
                                "give it one type in both, or rename one of them.")
        options = flag_options(flag, type_hints(builder).get(flag), param.default, where)
        text = parameter_help(builder).get(flag)
        if len(builders) == 1:
            default = param.default
            options["help"] = f"{text} ({options['help']})" if text else options["help"]
        else:  # None: each builder's own default
            default = None
            defaults = ", ".join(dict.fromkeys(f"{n + ' ' if len({p.default for _, _, p in entries}) > 1 else ''}"
                                               f"{p.default}" for n, _, p in entries))
            options["help"] = f"{text + ' ' if text else ''}(--{title} {'/'.join(n for n, _, _ in entries)}; " \
                              f"default: {defaults})".replace("%", "%%")
        group.add_argument(f"--{flag}", default=default, **options)
    return list(owners)


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
    if origin in (tuple, list) and args and args[0] in PLAIN_TYPES:
        if all(a in (args[0], Ellipsis) for a in args) and (Ellipsis in args or origin is list):
            return {"type": args[0], "nargs": "+", "help": f"one or more {args[0].__name__}; {shown}"}
        if origin is tuple and all(a is args[0] for a in args):
            return {"type": args[0], "nargs": len(args), "help": f"{len(args)} x {args[0].__name__}; {shown}"}
    raise UserError(f"The parameter {name!r} of {where} has the type {kind!r}{' | None' if optional else ''}, "
                    "which no flag can hold: use int, float, str, bool, Literal[...], X | None, "
                    "tuple[X, ...] or tuple[X, X] with X one of int, float, str.")


def without_none(kind: object) -> tuple[object, bool]:
    """`X | None` (or Optional[X]) -> (X, True); anything else -> (kind, False)."""
    if typing.get_origin(kind) in (typing.Union, UnionType):
        rest = [a for a in typing.get_args(kind) if a is not NoneType]
        if len(rest) == 1:
            return rest[0], True
    return kind, False


def builder_kwargs(builder: Callable, values: dict[str, object], supplied: tuple[str, ...]) -> dict[str, object]:
    """The flag values `builder` is called with: its parameters' values in `values` (the parsed
    flags), its own default where a shared flag was left at None or is absent, and several
    values as a tuple where the parameter is annotated as one (argparse gives lists)."""
    hints = type_hints(builder)
    kwargs = {}
    for param in flag_parameters(builder, supplied):
        value = values.get(param.name)
        if value is None:
            value = param.default
        kind, _ = without_none(hints.get(param.name))
        if typing.get_origin(kind) is tuple and isinstance(value, list):
            value = tuple(value)
        kwargs[param.name] = value
    return kwargs


def described_values(builder: Callable, kwargs: dict[str, object]) -> str:
    """`momentum=1.5`: the values of `kwargs` that are not the builder's defaults, for the
    message of a builder that refused them (all of them if none differ)."""
    defaults = {p.name: p.default for p in inspect.signature(builder).parameters.values()}
    changed = {name: value for name, value in kwargs.items() if defaults.get(name, inspect.Parameter.empty) != value}
    return ", ".join(f"{name}={value!r}" for name, value in (changed or kwargs).items()) or "its defaults"


def foreign_flags(builder: Callable, builders: dict[str, Callable], values: dict[str, object],
                  supplied: tuple[str, ...]) -> dict[str, list[str]]:
    """Shared flags given a value (not None) that `builder` does not take: flag -> the
    registry names that do. Such a value would be ignored without a word."""
    own = {p.name for p in flag_parameters(builder, supplied)}
    foreign: dict[str, list[str]] = {}
    for name, other in builders.items():
        for param in flag_parameters(other, supplied):
            if param.name not in own and values.get(param.name) is not None:
                foreign.setdefault(param.name, []).append(name)
    return foreign


def call_with_flags(builder: Callable, values: dict[str, object], supplied: dict[str, object]) -> object:
    """`builder(**supplied, **its flag values)` (see `builder_kwargs`)."""
    return builder(**supplied, **builder_kwargs(builder, values, tuple(supplied)))


def type_hints(builder: Callable) -> dict[str, object]:
    """The resolved annotations of a function, or of a class's __init__."""
    target = builder.__init__ if inspect.isclass(builder) else builder
    try:
        return typing.get_type_hints(target)
    except (NameError, TypeError) as error:
        raise UserError(f"The annotations of {describe(builder)} cannot be read ({error}).") from None


def parameter_help(builder: Callable) -> dict[str, str]:
    """The parameters described in the builder's docstring (a class's own or its __init__'s),
    Google style: an `Args:` line, then `name: what it is` lines (continued by deeper lines)."""
    texts = [inspect.getdoc(builder) or ""]
    if inspect.isclass(builder):
        texts.append(inspect.getdoc(builder.__init__) or "")
    described: dict[str, str] = {}
    for text in texts:
        indent, current = None, None  # the indent of the section's `name:` lines
        for line in text.splitlines():
            depth = len(line) - len(line.lstrip())
            if re.fullmatch(r"(Args|Arguments|Parameters):", line.strip()):
                indent, current = -1, None
            elif indent is None or not line.strip():
                continue
            elif depth == 0:  # the section ended
                indent, current = None, None
            elif indent in (-1, depth) and (match := re.fullmatch(r"(\w+)\s*(\([^)]*\))?:\s*(.*)", line.strip())):
                indent, current = depth, match.group(1)
                described[current] = match.group(3)
            elif current is not None and depth > indent:
                described[current] += " " + line.strip()
    return {name: text for name, text in described.items() if text}


def describe(builder: Callable) -> str:
    """`UNet (model/unet/model.py)`: where a user finds the constructor."""
    try:
        source = Path(inspect.getsourcefile(builder)).resolve().relative_to(PROJECT_ROOT).as_posix()
    except (TypeError, ValueError):
        source = builder.__module__
    return f"{builder.__qualname__} ({source})"
