"""`python -m runs`: list, filter, sort and compare the run directories under a folder.

    python -m runs                                   # every run under checkpoints/
    python -m runs checkpoints/lr_sweep --where model_type=better --where val/acc>0.9
    python -m runs --sort best --desc                # the best run first
    python -m runs --csv > runs.csv                  # every column, for pandas or a spreadsheet
    python -m runs --show <run dir or run name>      # everything one run records

The table shows each run's name, experiment, status, start, duration, model and data type,
the arguments that differ between the listed runs, the last epoch, the best --monitor value
and its epoch, and the newest evaluation's results. Columns and conditions are described in
runs/table.py and runs/filter.py. Only text files are read (no checkpoint, no
TensorBoard file), and runs that are running, crashed or half-written are listed with what
can be read ('?' marks what cannot). Standard library only: no torch import, fast start.
"""

import argparse
import sys
from pathlib import Path

from runs.details import format_run_details
from runs.filter import holds, parse_condition, sort_rows
from runs.reader import RunRecord, read_run
from runs.table import all_columns, differing_args, format_csv, format_text_table, run_row, table_columns
from utils.errors import UserError
from utils.run_dir import find_run_dirs, is_run_dir


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
    parser.add_argument("--sort", metavar="COLUMN", default="started",
                        help="order by this column, e.g. best, val/acc, duration (default: %(default)s)")
    parser.add_argument("--desc", action="store_true", help="sort in descending order (largest first)")
    parser.add_argument("--csv", action="store_true", help="print CSV with every column instead of the table")
    parser.add_argument("--show", metavar="RUN",
                        help="show one run in detail: its directory, or its name (a folder under root)")
    return parser


def list_runs(root: Path, where: list[str], sort: str, descending: bool, as_csv: bool) -> str:
    """The runs table (or CSV) of every run under `root` that meets every condition."""
    records = [read_run(path) for path in find_run_dirs(root)]
    if not records:
        raise UserError(f"No run directories under {root}; a run directory holds args.json (train.py makes "
                        "them in --checkpoints_dir). Give the folder that holds your runs.")
    rows = [run_row(record, root) for record in records]
    columns = set(all_columns(rows))
    conditions = [parse_condition(text, columns) for text in where]
    if sort not in columns:
        raise UserError(f"--sort {sort!r}: no run has that column; columns: {', '.join(sorted(columns))}.")
    kept = [i for i, row in enumerate(rows) if all(holds(condition, row) for condition in conditions)]
    if not kept:
        return "" if as_csv else f"No run matches {' and '.join(where)} (of {len(rows)} runs under {root})."
    total, records = len(rows), [records[i] for i in kept]
    rows = sort_rows([rows[i] for i in kept], sort, descending)
    if as_csv:
        return format_csv(rows, all_columns(rows))
    table = format_text_table(rows, table_columns(rows, differing_args(records)))
    return "\n".join([table, "", summary_line(rows, total), *problem_lines(rows)])


def summary_line(rows: list[dict[str, object]], total: int) -> str:
    """How many runs (of how many), and what `best` means for them."""
    count = f"{len(rows)} of {total} runs" if len(rows) < total else f"{total} run{'s' if total != 1 else ''}"
    monitors = {(row.get("monitor"), row.get("monitor_mode")) for row in rows}
    if len(monitors) == 1 and None not in next(iter(monitors)):
        ((monitor, mode),) = monitors
        return f"{count}; best = best {monitor} ({mode})"
    return (f"{count}; best = best --monitor value (see the monitor column; empty: the task's main "
            "metric, val/acc or val/miou)")


def problem_lines(rows: list[dict[str, object]]) -> list[str]:
    """One note per run with files that could not be read ('?' in the table)."""
    return [f"note: {row['run']}: {row['problems']}" for row in rows if row.get("problems")]


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
            text = list_runs(root, args.where, args.sort, args.desc, args.csv)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(text, end="" if args.csv and args.show is None else "\n")
    return 0

