"""`python -m runs --group_by <column>`: one row per group of runs (seeds, folds) with the
mean ± sample standard deviation of their results.

Runs are grouped by the values of the `--group_by` columns (repeat the flag for several,
e.g. `--group_by lr --group_by optimizer`). Each group row holds those values, `n` (the
runs in the group) and, for `best`, every last-epoch `val/...` value and every `eval/...`
result: the mean (column `<name>`, so `--sort best` orders groups by their mean best), the
sample standard deviation (n - 1 in the denominator; `<name>_std`, none for a single value)
and how many runs had a value (`<name>_n`, when fewer than n: a run still in its first
epoch, a run without evaluation). Runs are filtered by `--where` before grouping.
Standard library only (`statistics`).
"""

import json
import math
import statistics

from runs.filter import sort_key, sort_rows
from runs.reader import is_number
from runs.table import all_columns, format_csv, format_text_table
from utils.errors import UserError

Row = dict[str, object]


def aggregated_names(rows: list[Row]) -> list[str]:
    """The values averaged over a group: best, then the `val/...` and `eval/...` columns."""
    columns = all_columns(rows)
    return ["best", *(name for name in columns if name.startswith("val/")),
            *(name for name in columns if name.startswith("eval/"))]


def group_rows(rows: list[Row], keys: list[str]) -> list[Row]:
    """One row per distinct combination of the `keys` columns' values, in order of those
    values, with n and the statistics of every aggregated value."""
    missing = [key for key in keys if all(key not in row for row in rows)]
    if missing:
        raise UserError(f"--group_by {missing[0]!r}: no run has that column; columns: "
                        f"{', '.join(sorted(all_columns(rows)))}.")
    members: dict[tuple, list[Row]] = {}
    for row in rows:
        members.setdefault(tuple(hashable(row.get(key)) for key in keys), []).append(row)
    names = aggregated_names(rows)
    groups = [summarize(dict(zip(keys, values)), group, names) for values, group in members.items()]
    return sorted(groups, key=lambda group: [sort_key(group[key]) if group[key] is not None else (2, 0.0, "")
                                             for key in keys])


def hashable(value: object) -> object:
    """A cell as a group key: lists and objects (hand-edited args) as their JSON text, NaN as
    "nan" (NaN equals nothing, not even itself, so each would be a group of its own)."""
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True)
    return "nan" if isinstance(value, float) and math.isnan(value) else value


def summarize(group: Row, members: list[Row], names: list[str]) -> Row:
    """`group` (the key values) with n and, per name, `<name>` (mean), `<name>_std`, `<name>_n`."""
    group["n"] = len(members)
    for name in names:
        values = [float(row[name]) for row in members if is_number(row.get(name))]
        group[name] = statistics.fmean(values) if values else None
        group[f"{name}_std"] = sample_std(values)
        group[f"{name}_n"] = len(values)
    return group


def sample_std(values: list[float]) -> float | None:
    """The sample standard deviation (n - 1), None for fewer than two values, NaN when a value
    is NaN or infinite (a diverged run; statistics.stdev cannot take those)."""
    if len(values) < 2:
        return None
    return statistics.stdev(values) if all(math.isfinite(value) for value in values) else math.nan


def format_groups(rows: list[Row], keys: list[str], sort: str | None, descending: bool,
                  as_csv: bool) -> tuple[str, int]:
    """The groups of `rows` as a text table (`mean ± std`) or CSV (separate columns), and
    how many groups there are."""
    groups = group_rows(rows, keys)
    names = [name for name in aggregated_names(rows) if any(group[f"{name}_n"] for group in groups)]
    stats = [f"{name}{suffix}" for name in names for suffix in ("", "_std", "_n")]
    if sort is not None:
        if sort not in [*keys, "n", *stats]:
            raise UserError(f"--sort {sort!r}: with --group_by, sort by a group column: "
                            f"{', '.join([*keys, 'n', *stats])}.")
        groups = sort_rows(groups, sort, descending)
    if as_csv:
        header = [*keys, "n", *(f"{name}_{stat}" for name in names for stat in ("mean", "std", "n"))]
        renamed = [{**group, **{f"{name}_mean": group[name] for name in names}} for group in groups]
        return format_csv(renamed, header), len(groups)
    shown = [{**group, **{name: mean_and_std(group, name) for name in names}} for group in groups]
    return format_text_table(shown, [*keys, "n", *names]), len(groups)


def mean_and_std(group: Row, name: str) -> str:
    """`0.9123 ± 0.011`, `0.9123` for one value, `(n=2)` added when not every run had one."""
    mean, std, count = group[name], group[f"{name}_std"], group[f"{name}_n"]
    if mean is None:
        return ""
    text = f"{mean:.4g}" + (f" ± {std:.2g}" if std is not None else "")
    return text + (f" (n={count})" if count < group["n"] else "")


def groups_summary(count: int, rows: list[Row], total: int) -> str:
    """What the group table shows, and how many of its runs are not finished."""
    runs = f"{len(rows)} of {total} runs" if len(rows) < total else f"{total} run{'s' if total != 1 else ''}"
    unfinished = sum(row.get("status") != "finished" for row in rows)
    note = (f"; {unfinished} not finished (add --where status=finished to leave them out)" if unfinished else "")
    return (f"{count} group{'s' if count != 1 else ''} of {runs}: mean ± sample std over each group's runs, "
            f"n runs each{note}")

