"""A CSV table of pictures and their labels: `--data_type csv --train_list train.csv --val_list
val.csv`, one row a picture, a header naming the columns.

    path,label              path,cat,dog,car         path,tags           path,age,weight
    a.jpg,cat               a.jpg,1,0,1              a.jpg,cat;car       a.jpg,31.5,70
    one class a picture     several labels (0 / 1)   several labels      regression targets

`--path_column` names the picture column (paths relative to the CSV's folder, or absolute),
`--label_columns` the label column(s). The task (`--csv_task`) follows from them unless given:
several label columns of 0 and 1 are multilabel, of other numbers regression targets; one
column whose values hold `--label_separator` is multilabel; one column of whole numbers or
of names is classification; of other numbers, regression. Class (or label) names: classes.txt
beside the CSV (one a line), else the column names (several columns), else the sorted names
the column holds (classes.txt: for classification only). The validation table must give the
same names as the training one (train.py checks): where it may lack one, a classes.txt (or
0 / 1 columns) fixes them.
"""

import csv
import io
import math
from pathlib import Path
from typing import Literal

import torch

from data.augment import Augment
from data.demo_data import ensure_demo_data
from data.list_dataset import (
    CLASS_ID,
    ListDataset,
    ListEntry,
    Samples,
    check_class_ids,
    open_samples,
    read_class_names,
    read_text_file,
)
from utils.distributed import main_process_first
from utils.errors import UserError
from utils.run_info import file_sha256

Task = Literal["auto", "classification", "multilabel", "regression"]


def read_csv_samples(csv_path: str | Path, path_column: str = "path", label_columns: tuple[str, ...] = ("label",),
                     task: Task = "auto", separator: str = ";") -> Samples:
    """The pictures and labels of a CSV table (the rules in the module docstring)."""
    csv_path = Path(csv_path)
    rows = list(csv.reader(io.StringIO(read_text_file(csv_path, "CSV file", "The first row names the columns."))))
    if not rows or not any(rows[0]):
        raise UserError(f"CSV file {csv_path} is empty; its first row names the columns (e.g. path,label).")
    header, body = [name.strip() for name in rows[0]], [(n, row) for n, row in enumerate(rows[1:], start=2) if row]
    missing = [name for name in (path_column, *label_columns) if name not in header]
    if missing:
        raise UserError(f"CSV file {csv_path} has no column {', '.join(missing)} (--path_column / --label_columns); "
                        f"its columns: {', '.join(header)}.")
    if not body:
        raise UserError(f"CSV file {csv_path} holds a header and no rows: no pictures.")
    path_at, label_at = header.index(path_column), [header.index(name) for name in label_columns]
    for number, row in body:
        if len(row) != len(header):
            raise UserError(f"Row {csv_path}:{number} has {len(row)} fields, the header {len(header)}.")
    values = [[row[i].strip() for i in label_at] for _, row in body]
    task = task if task != "auto" else guess_task(values, separator)
    names = class_names(csv_path, values, label_columns, task, separator)
    entries = []
    for (number, row), labels in zip(body, values):
        where = f"{csv_path}:{number}"
        entries.append(ListEntry(csv_path.parent / row[path_at].strip(), parse_label(labels, task, names, separator,
                                                                                     where), where))
    if task == "classification":
        check_class_ids(entries, names, "the CSV's classes")
    return Samples(entries, names, task, csv_path, file_sha256(csv_path))


def guess_task(values: list[list[str]], separator: str) -> str:
    if len(values[0]) > 1:
        return "multilabel" if all(v in ("0", "1") for row in values for v in row) else "regression"
    column = [row[0] for row in values]
    if any(separator in v for v in column):
        return "multilabel"
    if all(CLASS_ID.fullmatch(v) for v in column) or not all(is_number(v) for v in column):
        return "classification"
    return "regression"


def class_names(csv_path: Path, values: list[list[str]], columns: tuple[str, ...], task: str,
                separator: str) -> list[str]:
    """classes.txt beside the CSV, else the label columns' names (several, or regression),
    else the names the column holds (class ids: 0 .. the largest)."""
    listed = read_class_names(csv_path, dense=False) if task == "classification" else None
    if listed is not None and len(columns) == 1:
        return listed
    if task == "regression" or len(columns) > 1:
        return list(columns)
    column = [row[0] for row in values]
    if task == "multilabel":
        return sorted({name.strip() for v in column for name in v.split(separator) if name.strip()})
    if all(CLASS_ID.fullmatch(v) for v in column):
        return [str(i) for i in range(max(int(v) for v in column) + 1)]
    return sorted(set(column))


def parse_label(labels: list[str], task: str, names: list[str], separator: str, where: str) -> int | torch.Tensor:
    """One row's label: a class id; a multi-hot float vector; or the targets, floats."""
    if task == "classification":
        value = labels[0]
        if CLASS_ID.fullmatch(value):
            return int(value)
        if value not in names:
            raise UserError(f"Label {value!r} at {where} is not one of the classes ({', '.join(names[:10])}"
                            f"{', ...' if len(names) > 10 else ''}).")
        return names.index(value)
    if task == "multilabel":
        hot = torch.zeros(len(names))
        if len(labels) > 1:
            for i, value in enumerate(labels):
                if value not in ("0", "1"):
                    raise UserError(f"Label column {names[i]} at {where} holds {value!r}; a label column holds 0 or 1.")
                hot[i] = float(value)
            return hot
        for name in (n.strip() for n in labels[0].split(separator) if n.strip()):
            if name not in names:
                raise UserError(f"Label {name!r} at {where} is not one of the labels ({', '.join(names[:10])}).")
            hot[names.index(name)] = 1.0
        return hot
    targets = []
    for value in labels:
        if not is_number(value):
            raise UserError(f"Target {value!r} at {where} is not a number; a regression target is one, e.g. 3.5.")
        targets.append(float(value))
    return torch.tensor(targets)


def is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def build_csv(list_path: str, train: bool, augment: Augment, path_column: str = "path",
              label_columns: tuple[str, ...] = ("label",), csv_task: Task = "auto", label_separator: str = ";",
              image_size: int = 32, in_memory: bool | None = None) -> ListDataset:
    """Registry builder (see data/data_entry.py): a CSV table of picture paths and labels.

    Args:
        path_column: the CSV column of the picture paths
        label_columns: the label column(s): one class; several 0 / 1 labels; or regression targets
        csv_task: classification, multilabel or regression (default auto: from the label columns)
        label_separator: between the labels of one picture in a single label column, e.g. cat;car
        image_size: the side, in pixels, every picture is resized to
        in_memory: hold the resized pictures in memory (default: when they take at most 512 MiB)
    """
    with main_process_first():  # the demo's tables are drawn on first use, by one process
        ensure_demo_data(list_path)
    samples = read_csv_samples(list_path, path_column, label_columns, csv_task, label_separator)
    return open_samples(samples, train, augment, image_size, in_memory)


build_csv.changeable_on_resume = ("in_memory",)  # the same values from memory or from disk
