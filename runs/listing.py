"""`python -m runs`: list, filter, sort and compare the run directories under a folder.

    python -m runs                                   # every run under checkpoints/
    python -m runs checkpoints/lr_sweep --where model_type=better --where val/acc>0.9
    python -m runs --sort best --desc                # the best run first
    python -m runs --columns all                     # every table column, however wide
    python -m runs --columns run,lr,best,eval/acc    # just these
    python -m runs --csv > runs.csv                  # every column, for pandas or a spreadsheet
    python -m runs --show <run dir or run name>      # everything one run records
    python -m runs checkpoints/lr_sweep --group_by lr   # mean ± std over the seeds of each lr

The table shows each run's name, experiment, status, start, duration, model and data type,
the arguments that differ between the listed runs, the last epoch, the best --monitor value
(with its name: `val/acc 0.98`) and its epoch, and the newest evaluation's results; it fits
100 characters, leaving out the least telling columns first (a note says how many; `--columns
all` shows them, `--columns a,b,c` chooses). Columns and conditions are described in
runs/table.py and runs/filter.py. Only text files are read (no checkpoint, no
TensorBoard file), and runs that are running, crashed or half-written are listed with what
can be read ('?' marks what cannot); a "running" run whose process is gone shows as `dead`
(utils/liveness.py). `--group_by` (runs/groups.py) prints one row per group of runs instead.
Standard library only: no torch import, fast start.
"""

import argparse
import os
import signal
import sys
from pathlib import Path

from runs.details import format_run_details
from runs.filter import holds, parse_condition, sort_rows
from runs.groups import format_groups, groups_summary
from runs.reader import RunRecord, monitor_mode, read_run
from runs.table import (
    all_columns,
    differing_args,
    fitting_columns,
    format_csv,
    format_text_table,
    printable,
    run_row,
    table_columns,
)
from utils.errors import UserError
from utils.run_search import find_run_dirs, is_run_dir

DEFAULT_SORT = "started"


def build_parser() -> argparse.ArgumentParser:
    usage_and_examples = "\n\n".join(__doc__.split("\n\n")[:2])
    parser = argparse.ArgumentParser(prog="python -m runs", description=usage_and_examples,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", nargs="?", default="checkpoints",
                        help="folder holding run directories, searched through experiment folders "
                             "(default: %(default)s)")
    parser.add_argument("--where", action="append", default=[], metavar="CONDITION",
                        help="keep runs where <column><op><value> holds, op one of = != > >= < <=, e.g. "
                             "model_type=base, val/acc>0.9, epochs>=10, best>0.95; repeat to combine")
    parser.add_argument("--sort", metavar="COLUMN", default=None,
                        help=f"order by this column, e.g. best, val/acc, duration (default: {DEFAULT_SORT}; "
                             "with --group_by: the group values)")
    parser.add_argument("--desc", action="store_true", help="sort in descending order (largest first)")
    parser.add_argument("--columns", default="fit", metavar="COLUMNS",
                        help="the table's columns: fit (default: the most telling ones within 100 characters), "
                             "all (every column it would show, however wide), or names separated by commas, "
                             "e.g. run,lr,best,eval/acc (any column of --csv)")
    parser.add_argument("--csv", action="store_true", help="print CSV with every column instead of the table")
    parser.add_argument("--show", metavar="RUN",
                        help="show one run in detail: its directory, or its name (a folder under root)")
    parser.add_argument("--group_by", action="append", default=[], metavar="COLUMN",
                        help="one row per group of runs with equal values in COLUMN (repeat for several, "
                             "e.g. --group_by lr --group_by optimizer): n, and mean ± std of best and of "
                             "each val/... and eval/... value over the group's runs (seeds, folds)")
    return parser


def list_runs(root: Path, where: list[str], sort: str | None, descending: bool, as_csv: bool,
              group_by: list[str] = (), shown: str = "fit") -> str:
    """The runs table (or CSV) of every run under `root` that meets every condition; with
    `group_by`, the table of their groups. `shown`: --columns."""
    unreadable: list[Path] = []
    records = [read_run(path) for path in find_run_dirs(root, unreadable)]
    if not records:
        searched = f" ({len(unreadable)} folder(s) could not be read, e.g. {unreadable[0]})" if unreadable else ""
        raise UserError(f"No run directories under {root}{searched}; a run directory holds args.json (train.py "
                        "makes them in --checkpoints_dir). Give the folder that holds your runs.")
    rows = [run_row(record, root) for record in records]
    known = set(all_columns(rows))
    conditions = [parse_condition(text, known) for text in where]
    if not group_by and (sort or DEFAULT_SORT) not in known:
        raise UserError(f"--sort {sort!r}: no run has that column; columns: {', '.join(sorted(known))}.")
    kept = [i for i, row in enumerate(rows) if all(holds(condition, row) for condition in conditions)]
    if not kept:
        return "" if as_csv else f"No run matches {' and '.join(where)} (of {len(rows)} runs under {root})."
    total, records, rows = len(rows), [records[i] for i in kept], [rows[i] for i in kept]
    notes = [f"note: {printable(str(folder))} cannot be read; runs in it are not listed" for folder in unreadable]
    if group_by:
        text, count = format_groups(rows, group_by, sort, descending, as_csv)
        summary = f"{groups_summary(count, rows, total)}; {best_meaning(records)}"
        return text if as_csv else "\n".join([text, "", summary, *problem_lines(rows), *notes])
    rows = sort_rows(rows, sort or DEFAULT_SORT, descending)
    if as_csv:
        return format_csv(rows, all_columns(rows))
    wanted = table_columns(rows, differing_args(records))
    columns = chosen_columns(shown, rows, wanted, known)
    table = format_text_table(rows, columns)
    left_out = len(set(wanted) - set(columns)) if shown == "fit" else 0
    return "\n".join([table, "", summary_line(rows, total, records, columns, left_out), *outdated_lines(rows),
                      *problem_lines(rows), *notes])


def chosen_columns(shown: str, rows: list[dict[str, object]], wanted: list[str], known: set[str]) -> list[str]:
    """--columns: `fit` (the table's columns within 100 characters), `all`, or a comma list of
    known columns (refused, naming them, when one is not)."""
    if shown == "fit":
        return fitting_columns(rows, wanted)
    if shown == "all":
        return wanted
    names = [name.strip() for name in shown.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise UserError(f"--columns {shown!r}: {'no such column: ' + ', '.join(unknown) if unknown else 'no column'}"
                        f"; give fit, all, or column names separated by commas, of: {', '.join(sorted(known))}.")
    return names


def summary_line(rows: list[dict[str, object]], total: int, records: list[RunRecord], columns: list[str],
                 left_out: int = 0) -> str:
    """How many runs (of how many), what `best` means for them (when it is shown), and how
    many columns were left out to fit; it names no column the table does not show."""
    count = f"{len(rows)} of {total} runs" if len(rows) < total else f"{total} run{'s' if total != 1 else ''}"
    parts = [count, *([best_meaning(records)] if "best" in columns else [])]
    if left_out:
        parts.append(f"{left_out} more column{'s' if left_out != 1 else ''}: --columns all")
    return "; ".join(parts)


def best_meaning(records: list[RunRecord]) -> str:
    """`best = best val/acc (max)` when all runs share one monitor, else how to read it."""
    monitors = {(record.monitor, monitor_mode(record.args or {}, record.monitor)) for record in records}
    if len(monitors) == 1:
        ((monitor, mode),) = monitors
        return f"best = best {monitor} ({mode})"
    return "best = each run's best --monitor value"


def outdated_lines(rows: list[dict[str, object]]) -> list[str]:
    """One note per run whose newest evaluation is of a checkpoint written again since."""
    return [f"note: {row['run']}: its evaluation {row['eval']} (old) is of an earlier "
            f"{row['eval'].split('/')[0]}.pth: the run went on after it, so its results and best may disagree; "
            f"evaluate again: python eval.py --load_model_path {row['path']}"
            for row in rows if row.get("eval_outdated")]


def problem_lines(rows: list[dict[str, object]]) -> list[str]:
    """One note per run with files that could not be read ('?' in the table)."""
    return [f"note: {printable(row['run'])}: {printable(row['problems'])}" for row in rows if row.get("problems")]


def find_run(run: str, root: Path) -> RunRecord:
    """--show's run: a run directory path, or the name of a run directory under `root`."""
    path = Path(run)
    if not is_run_dir(path):
        matches = [found for found in find_run_dirs(root) if found.name == run]
        if len(matches) > 1:
            raise UserError(f"--show {run}: several runs have that name: "
                            f"{', '.join(map(str, matches))}; give the path of one.")
        if not matches:
            raise UserError(f"--show {run}: not a run directory (a folder holding args.json), and no run "
                            f"under {root} has that name.")
        path = matches[0]
    return read_run(path)


def main(argv: list[str] | None = None) -> int:
    """Entry point; a UserError becomes one line on stderr and exit code 2."""
    args = build_parser().parse_args(argv)
    root = Path(args.root)
    try:
        if args.show is not None:
            text = format_run_details(find_run(args.show, root))
        else:
            text = list_runs(root, args.where, args.sort, args.desc, args.csv, args.group_by, args.columns)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        print(text, end="" if args.csv and args.show is None else "\n", flush=True)
    except BrokenPipeError:  # `python -m runs | head`: the reader left; stop quietly, as other tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 128 + signal.SIGPIPE
    return 0

