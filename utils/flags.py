"""argparse, the way the template's command lines use it: one-line errors (`Parser`), numbers
checked as they are read (`number`, `positive`), what a flag means beyond one parse (`flag`),
and the flags of an earlier run (`read_flags_file`, `flags_as_argv`, `changed_flags`).
Standard library only; the flags themselves are in options.py."""

import difflib
import json
import math
import os
import re
from argparse import SUPPRESS, ArgumentParser, ArgumentTypeError, BooleanOptionalAction, Namespace
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from utils.errors import UserError
from utils.small_files import read_json_file


class Parser(ArgumentParser):
    """argparse that reports an error in one line (and where the help is), without the usage
    block; an unknown flag gets `hint(flag)` (whose flag it is) or the flags it may be a typo of."""

    def __init__(self, prog: str, description: str | None = None, add_help: bool = True,
                 hint: Callable[[str], str] | None = None, usage: str | None = None) -> None:
        super().__init__(prog=prog, description=description, add_help=add_help, allow_abbrev=False, usage=usage)
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

    def format_groups(self, groups: list) -> str:
        """The help of these argument groups alone, without usage and description: the part of
        -h that comes later (template_flags.answer_early)."""
        formatter = self._get_formatter()
        for group in groups:
            formatter.start_section(group.title)
            formatter.add_text(group.description)
            formatter.add_arguments(group._group_actions)
            formatter.end_section()
        return formatter.format_help()


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


def worker_processes(text: str) -> int:
    """A `type=` for --num_workers: 0 or more, at most 4 per CPU this process may use. Each
    worker is a process; 100,000 of them loaded the machine past 300 and produced no batch."""
    value = AMOUNT(text)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if value > 4 * cpus:
        raise ArgumentTypeError(f"{value} is more worker processes than this machine can run: it has {cpus} CPU(s) "
                                f"for this process; use at most {4 * cpus} (4 per CPU), e.g. {min(cpus, 8)}.")
    return value


def read_flags_file(path: str, flag_name: str) -> dict:
    """The flags saved in a run directory's args.json (or in that file itself)."""
    file = Path(path) / "args.json" if Path(path).is_dir() else Path(path)
    try:
        values = read_json_file(file)  # a regular file (a FIFO would block), not absurdly large or nested
    except FileNotFoundError:
        raise UserError(f"{flag_name} {path}: {file} does not exist; give a run directory or its args.json.") from None
    except (OSError, ValueError) as error:
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
        action, shown = actions[name], json.dumps(value)[:60]
        if value is None:  # the flag's own default (e.g. --in_memory's: by the set's size)
            continue
        if isinstance(action, BooleanOptionalAction):  # "false" (text) would be true: only JSON's true / false
            if not isinstance(value, bool):
                parser.error(f"{context}{name} is {shown}: --{name} is on or off, so give true or false.")
            words.append(f"--{name}" if value else f"--no-{name}")
        elif isinstance(value, list) and action.nargs in ("+", "*"):
            words += [f"--{name}", *map(str, value)]
        elif isinstance(value, (list, dict)):
            parser.error(f"{context}{name} is {shown}: --{name} takes one value.")
        else:
            words.append(f"--{name}={value}")  # `=`: a value that starts with "-" is still the value
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
