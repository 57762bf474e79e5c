"""The runs table: one flat row of values per run, which columns to show, and the text and
CSV forms of it.

A row maps column names to plain values (numbers stay numbers, so sorting and `--where`
compare them as numbers); only printing turns them into text. Columns:

- `run` (folder name), `exp`, `status` (status.json's, or `dead` for a "running" run whose
  process is gone: utils/liveness.py), `started`, `duration` (seconds), `model_type`, `data_type`
- every argument from args.json, under its own name (`lr`, `epochs`, `monitor`, ...)
- every metrics.csv value of the last epoch (`train/loss`, `val/acc`, ...) and `epoch`, the
  last epoch done
- `best` and `best_epoch`: the best `--monitor` value and its epoch (status.json, else
  metrics.csv; `?` when status.json's is not a number), and `best_metric`, the monitor it is
  the best of (the text table writes it in the `best` cell: `val/acc 0.98`)
- `eval`: the newest evaluation (`<checkpoint stem>/<name>`) and `eval/<name>` for each of
  its result.txt values without a `/` (`eval/acc`, `eval/loss`; per-class values are left out);
  `eval_outdated`: True when the checkpoint it evaluated was written again since (the run went
  on), shown as `(old)` after the `eval` cell and in a note under the table
- `path` and `problems` (the files that could not be read)

The text table shows the first group, the arguments whose values differ between the listed
runs (less `NOT_COMPARED`; the `IDENTIFYING` ones first), `epoch`, `best`, `best_epoch` and the
evaluation, less the columns empty in every row; by default it narrows to `TEXT_WIDTH`
characters by leaving out the least telling columns first (`fitting_columns`). CSV has all.
"""

import csv
import io
import json
import re
from pathlib import Path

from runs.reader import UNKNOWN, RunRecord, duration_seconds
from utils.liveness import shown_status

FRONT = ("run", "exp", "status", "started", "duration", "model_type", "data_type")
PROGRESS = ("epoch", "best", "best_epoch")
# Arguments that say where or how fast a run went, not what it computed; never a column of
# the text table (CSV has them). run_dir and resume differ for every run.
NOT_COMPARED = ("run_dir", "resume", "checkpoints_dir", "save_prefix", "num_workers", "in_memory", "print_freq",
                "save_freq", "save_every_steps", "gpus", "debug")
MAX_TEXT_WIDTH = 40  # longer text cells (list file paths) keep their end
TEXT_WIDTH = 100  # the default table fits a terminal this wide (--columns all: no limit)
# The arguments that tell runs apart first: shown first, and left out last when the table narrows.
IDENTIFYING = ("lr", "batch_size", "epochs", "optimizer", "loss", "scheduler", "weight_decay", "seed")
# Columns the table can best do without, the first first; then the other arguments, `exp`, the
# evaluation's values (its main metric last), the identifying arguments (the last ones first),
# `epoch` and `model_type`. `run`, `status` and `best` always stay.
FIRST_LEFT_OUT = ("started", "data_type", "best_epoch", "duration", "eval")
ALWAYS_SHOWN = ("run", "status", "best")
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")  # and direction overrides


def run_row(record: RunRecord, root: Path) -> dict[str, object]:
    """The run's columns (see the module docstring)."""
    args, status = record.args, record.status
    row = {
        "run": record.path.name,
        "exp": experiment(record, root),
        "status": (shown_status(status) or UNKNOWN) if status is not None else UNKNOWN,
        "started": status.get("started") if status is not None else UNKNOWN,
        "duration": duration_seconds(status, alive=shown_status(status) != "dead") if status is not None else None,
        "model_type": args.get("model_type") if args is not None else UNKNOWN,
        "data_type": args.get("data_type") if args is not None else UNKNOWN,
        "epoch": int(record.metrics[-1]["epoch"]) if record.metrics else None,
        "best": record.best,
        "best_metric": record.monitor,
        "best_epoch": record.best_epoch,
        "eval": record.evaluation.relative_to(record.path).as_posix() if record.evaluation else None,
        "eval_outdated": record.evaluation_outdated if record.evaluation else None,
    }
    row.update((f"eval/{name}", value) for name, value in record.results.items() if "/" not in name)
    row.update((name, value) for name, value in (record.metrics[-1] if record.metrics else {}).items()
               if name != "epoch")
    for name, value in (args or {}).items():
        row.setdefault(name, value)
    row["path"], row["problems"] = str(record.path), "; ".join(record.problems)
    return row


def experiment(record: RunRecord, root: Path) -> str | None:
    """--exp as recorded, else the folders between `root` and the run (runs filed by hand)."""
    if record.args is not None and record.args.get("exp"):
        return str(record.args["exp"])
    try:
        folder = record.path.parent.relative_to(root).as_posix()
    except ValueError:
        return None
    return None if folder == "." else folder


def differing_args(records: list[RunRecord]) -> list[str]:
    """Arguments whose values are not all equal among the runs whose args.json was read
    (a missing argument counts as None), less NOT_COMPARED and the fixed columns."""
    readable = [record.args for record in records if record.args is not None]
    names = sorted({name for args in readable for name in args} - set(NOT_COMPARED) - set(FRONT) - {"exp"},
                   key=lambda name: (IDENTIFYING.index(name) if name in IDENTIFYING else len(IDENTIFYING), name))
    return [name for name in names
            if len({json.dumps(args.get(name), sort_keys=True) for args in readable}) > 1]


def table_columns(rows: list[dict[str, object]], args: list[str]) -> list[str]:
    """The text table's columns: fixed ones, the differing `args`, progress, evaluation."""
    evaluation = ["eval"] + [name for name in all_columns(rows) if name.startswith("eval/")]
    return [*FRONT, *args, *PROGRESS, *(evaluation if any(row.get("eval") for row in rows) else [])]


def fitting_columns(rows: list[dict[str, object]], columns: list[str], width: int = TEXT_WIDTH) -> list[str]:
    """`columns` less those empty in every row, then less the least telling ones
    (`FIRST_LEFT_OUT`, ...) until the text table is at most `width` characters wide; then
    those left out on the way that fit into the room made are put back."""
    shown = [name for name in columns
             if name in ALWAYS_SHOWN or any(row.get(name) not in (None, "") for row in rows)]
    fixed = {*FRONT, *PROGRESS}
    args = [name for name in shown if name not in fixed and not name.startswith("eval")]
    main = {f"eval/{str(row.get('best_metric')).split('/')[-1]}" for row in rows}  # eval/acc beside val/acc
    evaluation = sorted((name for name in shown if name.startswith("eval/")), key=lambda name: name not in main)
    identifying = [name for name in args if name in IDENTIFYING]
    order = [*FIRST_LEFT_OUT, *[name for name in reversed(args) if name not in IDENTIFYING], "exp",
             *reversed(evaluation), *reversed(identifying), "epoch", "model_type"]
    left_out = []
    for name in order:
        if text_width(rows, shown) <= width:
            break
        if name in shown:
            shown.remove(name)
            left_out.append(name)
    for name in reversed(left_out[:-1]):  # the last one left out made room: put back what fits beside it
        wider = [column for column in columns if column in shown or column == name]
        if text_width(rows, wider) <= width:
            shown = wider
    return shown


def text_width(rows: list[dict[str, object]], columns: list[str]) -> int:
    """The width of the widest line of the text table of these columns."""
    return max(len(line) for line in format_text_table(rows, columns).splitlines())


def all_columns(rows: list[dict[str, object]]) -> list[str]:
    """Every column of any row (CSV): the fixed ones, the evaluation, the metrics, then the
    arguments (names without a `/`) alphabetically, and path and problems last."""
    seen = dict.fromkeys(name for row in rows for name in row)
    fixed = [*FRONT, *PROGRESS, "best_metric", "eval", "eval_outdated", "path", "problems"]
    evaluation = [name for name in seen if name.startswith("eval/")]
    metrics = [name for name in seen if "/" in name and not name.startswith("eval/")]
    args = sorted(name for name in seen if "/" not in name and name not in fixed)
    return [*FRONT, "epoch", "best", "best_metric", "best_epoch", "eval", "eval_outdated", *evaluation, *metrics,
            *args, "path", "problems"]


def format_text_table(rows: list[dict[str, object]], columns: list[str]) -> str:
    """Aligned columns, two spaces apart; numbers short (4 significant digits)."""
    cells = [columns] + [[text_cell(name, row) for name in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip()
                     for line in cells)


def text_cell(column: str, row: dict[str, object]) -> str:
    """A cell of the text table: `display`'s value; `best` with the metric it is the best of
    (`val/acc 0.98`: runs of several tasks or monitors in one table), an outdated
    evaluation marked `(old)`."""
    text = display(column, row.get(column))
    if column == "best" and row.get("best") is not None and row.get("best_metric"):
        return f"{printable(str(row['best_metric']))} {text}"
    return text + " (old)" if column == "eval" and row.get("eval_outdated") else text


def format_csv(rows: list[dict[str, object]], columns: list[str]) -> str:
    """CSV with a header; full-precision numbers, empty cells for unknown values."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([[csv_value(row.get(name)) for name in columns] for row in rows])
    return buffer.getvalue()


def display(column: str, value: object) -> str:
    """A value as the text table shows it."""
    if column == "duration" and isinstance(value, (int, float)):
        return format_duration(value)
    if column == "started" and isinstance(value, str) and value != UNKNOWN:
        return value[:16].replace("T", " ")  # 2026-11-25T13:01:02+01:00 -> 2026-11-25 13:01
    if isinstance(value, float):
        return f"{value:.4g}"
    text = printable(csv_value(value))
    return text if len(text) <= MAX_TEXT_WIDTH else "..." + text[-(MAX_TEXT_WIDTH - 3):]


def printable(text: str) -> str:
    """`text` with control characters (a newline, ESC, which a terminal would obey) and
    direction overrides shown as escapes (`\\n`, `\\x1b`): a folder name cannot break the
    table or restyle the terminal."""
    return CONTROL.sub(lambda match: match.group().encode("unicode_escape").decode("ascii"), text)


def csv_value(value: object) -> str:
    """A value as text: lists as on the command line (`0 1`), None as an empty cell."""
    if value is None:
        return ""
    if isinstance(value, list):
        return " ".join(map(str, value))
    return str(value)


def format_duration(seconds: float) -> str:
    """45s, 12m05s, 3h07m."""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
