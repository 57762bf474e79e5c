"""The points of a sweep: every combination of the `--grid` values, times `--seeds`, times
`--folds`, and the train.py flags of each.

`--grid lr=0.001,0.003 --grid optimizer=sgd,adamw --seeds 0 1 --folds 3` is 2 x 2 x 2 x 3 =
24 points. Seeds vary slowest, then folds, then the grid (the first --grid slowest): a sweep
stopped half-way has every grid value for the first seeds, not every seed of the first
values. Values are kept as typed (`lr=1e-3` and `lr=0.001` are different points to the
manifest, the same number to train.py) and passed as `--<name>=<value>`, which also takes
values starting with `-`. Grid flags need a value: an on/off flag (`--deterministic`) goes
after `--` for every run instead.
"""

import itertools
import re
from dataclasses import dataclass

from utils.errors import UserError

# Flags the sweep sets itself for every point, which can be neither grid names nor come after
# `--`, and what to do instead.
SWEEP_FLAGS = {
    "exp": "give --exp to the sweep (before --)",
    "checkpoints_dir": "give --checkpoints_dir to the sweep (before --)",
    "seed": "give the sweep --seeds 0 1 2 (before --)",
    "fold": "give the sweep --folds K (before --): it runs --fold 0 to K-1",
    "folds": "give the sweep --folds K (before --): it runs --fold 0 to K-1",
    "resume": "run the same sweep command again: it resumes interrupted and dead runs",
}
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
UNSAFE_IN_FILE_NAME = re.compile(r"[^A-Za-z0-9._=+-]+")


@dataclass(frozen=True)
class Point:
    """One run of the sweep: its grid values (name, value), its seed and its fold."""

    flags: tuple[tuple[str, str], ...]
    seed: int | None = None
    fold: int | None = None

    @property
    def label(self) -> str:
        """`lr=0.001 optimizer=sgd seed=0 fold=1`: for messages and the manifest."""
        parts = [f"{name}={value}" for name, value in self.flags]
        parts += [f"seed={self.seed}"] if self.seed is not None else []
        parts += [f"fold={self.fold}"] if self.fold is not None else []
        return " ".join(parts) or "default flags"

    def train_flags(self, folds: int | None) -> list[str]:
        """The flags this point adds to train.py's command line."""
        flags = [f"--{name}={value}" for name, value in self.flags]
        flags += ["--seed", str(self.seed)] if self.seed is not None else []
        flags += ["--folds", str(folds), "--fold", str(self.fold)] if self.fold is not None else []
        return flags

    def file_name(self, index: int) -> str:
        """`003_lr=0.001_seed=0`: a unique, safe file name (the index makes it unique)."""
        safe = UNSAFE_IN_FILE_NAME.sub("_", self.label.replace(" ", "_"))
        return f"{index:03d}_{safe}"[:120]


def parse_grid(texts: list[str]) -> dict[str, list[str]]:
    """`--grid name=v1,v2` texts as {name: [values]} in the order given."""
    grid: dict[str, list[str]] = {}
    for text in texts:
        name, equals, values_text = text.partition("=")
        name = name.strip().removeprefix("--")
        values = [value.strip() for value in values_text.split(",")]
        if not equals or not NAME.fullmatch(name) or "" in values:
            raise UserError(f"--grid {text!r}: write <flag>=<value>,<value>,... with a train.py flag name and "
                            "no empty value, e.g. --grid lr=0.001,0.003,0.01.")
        if name in SWEEP_FLAGS:
            raise UserError(f"--grid {text!r}: the sweep sets --{name} itself; {SWEEP_FLAGS[name]}.")
        if name in grid:
            raise UserError(f"--grid {name} is given twice; give all its values once: --grid {name}=a,b,c.")
        if len(set(values)) < len(values):
            raise UserError(f"--grid {text!r} repeats a value; each value once.")
        grid[name] = values
    return grid


def grid_points(grid: dict[str, list[str]], seeds: list[int] | None, folds: int | None) -> list[Point]:
    """Every point, seeds slowest, then folds, then the grid values (first --grid slowest)."""
    combinations = list(itertools.product(*[[(name, value) for value in values] for name, values in grid.items()]))
    return [Point(tuple(flags), seed, fold)
            for seed in (seeds if seeds is not None else [None])
            for fold in (range(folds) if folds is not None else [None])
            for flags in combinations]


def check_train_flags(train_flags: list[str], grid: dict[str, list[str]]) -> None:
    """The flags after `--` must not set what the sweep or the grid sets."""
    for token in train_flags:
        name = token.removeprefix("--").partition("=")[0]
        if not token.startswith("--") or not name:
            continue
        if name in SWEEP_FLAGS:
            raise UserError(f"{token} after --: the sweep sets --{name} itself for every run; {SWEEP_FLAGS[name]}.")
        if name in grid:
            raise UserError(f"{token} after --: --{name} is a --grid flag of this sweep; give its values "
                            f"only in --grid {name}=...")
