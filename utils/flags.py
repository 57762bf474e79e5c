"""argparse, the way the template's command lines use it: one-line errors (`Parser`), numbers
checked as they are read (`number`, `positive`), what a flag means beyond one parse (`flag`),
and the flags of an earlier run (`read_flags_file`, `flags_as_argv`, `changed_flags`).
Standard library only; the flags themselves are in options.py."""

import difflib
import json
import math
import re
from argparse import SUPPRESS, ArgumentParser, ArgumentTypeError, BooleanOptionalAction, Namespace
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from utils.errors import UserError


class Parser(ArgumentParser):
    """argparse that reports an error in one line (and where the help is), without the usage
    block; an unknown flag gets `hint(flag)` (whose flag it is) or the flags it may be a typo of."""

    def __init__(self, prog: str, description: str | None = None, add_help: bool = True,
                 hint: Callable[[str], str] | None = None) -> None:
        super().__init__(prog=prog, description=description, add_help=add_help, allow_abbrev=False)
        self.context = ""  # what is being parsed, when not the command line (e.g. "--config x: ")
        self.hint = hint

    def error(self, message: str) -> NoReturn:
        message = re.sub(r"^argument (--\w+): (?=[-+\w.]+ (must|is) )", r"\1 ", message)  # a type= check's words
        if message.startswith("unrecognized arguments: "):
            unknown = next((w.split("=")[0] for w in message.split(": ", 1)[1].split() if w.startswith("--")), "")
            message += self.unknown_flag_hint(unknown) if unknown else ""
        command = self.prog if self.prog.startswith("python ") else f"python {self.prog}"  # tools: python -m ...
        self.exit(2, f"error: {self.context}{message}\n(`{command} -h` lists the flags)\n")

    def unknown_flag_hint(self, unknown: str) -> str:
        owner = self.hint(unknown) if self.hint else ""
        if owner:
            return f" ({owner})"
        known = [s for a in self._actions for s in a.option_strings if s.startswith("--")]
        prefixed = sorted((s for s in known if unknown.startswith(s) or s.startswith(unknown)), key=len, reverse=True)
        close = list(dict.fromkeys([*prefixed, *difflib.get_close_matches(unknown, known, n=3)]))[:3]
        return f" (did you mean {' or '.join(close)}?)" if close else ""


def flag(group, name: str, on_resume: str = "refused", eval_takes: bool = False, config: bool = True,
         **options: object) -> None:
    """`group.add_argument(name, **options)` with "(default: ...)" after the help of a flag that
    has a value by default, and what the flag means beyond this parse: `on_resume="allowed"`
    for flags that change neither the model, the data nor the updates (a resumed run may
    change them), `eval_takes` for flags eval.py takes from the checkpoint it evaluates unless
    given, `config=False` for flags --config does not carry over."""
    if options.get("default") not in (None, False, SUPPRESS) and "(default" not in options["help"] \
            and options.get("action") is not BooleanOptionalAction:
        options["help"] = f"{options['help']} (default: %(default)s)"
    action = group.add_argument(name, **options)
    action.on_resume, action.eval_takes, action.config = on_resume, eval_takes, config


def number(kind: type, low: float, high: float | None = None, high_open: bool = True,
           words: str = "must be") -> Callable[[str], float]:
    """A `type=` for numbers in [low, high), or [low, high], or [low, inf): a value outside is
    refused naming it (`--epochs 0 must be 1 or more`)."""
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise ArgumentTypeError(f"invalid {kind.__name__} value: {text!r}") from None
        if not (math.isfinite(value) and value >= low and (high is None or value < high
                                                           or (not high_open and value == high))):
            bound = f"in [{low}, {high}{')' if high_open else ']'}" if high is not None else f"{low} or more"
            raise ArgumentTypeError(f"{value} {words} {bound}.")
        return value
    parse.__name__ = kind.__name__
    return parse


def positive(text: str) -> float:
    """A `type=` for a finite number above 0 (the learning rate)."""
    try:
        value = float(text)
    except ValueError:
        raise ArgumentTypeError(f"invalid float value: {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise ArgumentTypeError(f"{value} must be a positive number.")
    return value


COUNT, AMOUNT = number(int, 1), number(int, 0)  # 1 or more; 0 or more
FRACTION, PROBABILITY = number(float, 0, 1), number(float, 0, 1, high_open=False, words="is a probability: it must be")


def read_flags_file(path: str, flag_name: str) -> dict:
    """The flags saved in a run directory's args.json (or in that file itself)."""
    file = Path(path) / "args.json" if Path(path).is_dir() else Path(path)
    try:
        values = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{flag_name} {path}: {file} does not exist; give a run directory or its args.json.") from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise UserError(f"{flag_name} {path}: {file} is not readable JSON ({error}).") from None
    if not isinstance(values, dict):
        raise UserError(f"{flag_name} {path}: {file} holds no JSON object of flags.")
    return values


def flags_as_argv(parser: Parser, values: dict, context: str, ignored: set[str] = frozenset()) -> list[str]:
    """Saved flag values as command-line words, checked by the same parser as typed flags (a
    bad value is reported after `context`); the command line goes after them, so it wins.
    Flags marked `config=False` and the `ignored` names that are no flag here are left out;
    any other unknown name is an error naming it."""
    actions = {a.dest: a for a in parser._actions if a.option_strings}
    values = {name: value for name, value in values.items() if getattr(actions.get(name), "config", True)
              and (name in actions or name not in ignored)}
    unknown = sorted(set(values) - set(actions))
    if unknown:
        parser.error(f"{context}unknown flag(s) {', '.join(unknown)}; valid flags: "
                     f"{', '.join(sorted(set(actions) - {'help'}))}.")
    words = []
    for name, value in values.items():
        if value is None:  # the flag's own default (e.g. --in_memory's: by the set's size)
            continue
        if isinstance(actions[name], BooleanOptionalAction):
            words.append(f"--{name}" if value else f"--no-{name}")
        else:
            words += [f"--{name}", *map(str, value if isinstance(value, list) else [value])]
    parser.context = context
    parser.parse_args(words)
    parser.context = ""
    return words


def changed_flags(parser: ArgumentParser, saved: dict, args: Namespace) -> tuple[dict[str, tuple], list[str]]:
    """The flags whose value differs from `saved` (name -> (saved, now)), and those of them a
    resumed run may not change (not marked `on_resume="allowed"`)."""
    actions = {a.dest: a for a in parser._actions if a.option_strings}
    changed = {name: (saved.get(name), value) for name, value in vars(args).items()
               if saved.get(name) != value and getattr(actions.get(name), "config", True)}
    refused = [name for name in changed if getattr(actions.get(name), "on_resume", "refused") != "allowed"]
    return changed, refused
