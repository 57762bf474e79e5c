"""`--where` conditions and `--sort` for the runs table (rows from runs/table.py).

A condition is `<column><op><value>` with op one of `=` (or `==`), `!=`, `>`, `>=`, `<`, `<=`:
`model_type=base`, `val/acc>0.9`, `epochs>=10`, `best>0.95`, `status!=finished`.
`=` and `!=` compare numbers as numbers (`lr=0.003` matches 3e-3) and text ignoring case
(`deterministic=true`); an empty value or `None` matches a run without that value. The
order comparisons compare numbers, or text alphabetically when the value is not a number
(`started>=2026-11-25`); runs without a value of that kind in the column are left out.
"""

import math
import re
from dataclasses import dataclass

from utils.errors import UserError

CONDITION = re.compile(r"\s*([^=!<>\s]+)\s*(==|!=|>=|<=|=|>|<)\s*(.*?)\s*")
ORDER = {">": lambda a, b: a > b, ">=": lambda a, b: a >= b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b}


@dataclass(frozen=True)
class Condition:
    """One --where: a column name, an operator and the value as typed."""

    name: str
    op: str
    value: str
    text: str  # as given, for messages


def parse_condition(text: str, columns: set[str]) -> Condition:
    """A --where text as a Condition; the column must exist in some run."""
    match = CONDITION.fullmatch(text)
    if match is None:
        raise UserError(f"--where {text!r} is not a condition: write <column><op><value> with op one of "
                        "= != > >= < <=, e.g. model_type=base, val/acc>0.9 or epochs>=10.")
    name, op, value = match.groups()
    if name not in columns:
        raise UserError(f"--where {text!r}: no run has a column {name!r}; columns: {', '.join(sorted(columns))}.")
    return Condition(name, "=" if op == "==" else op, value, text)


def holds(condition: Condition, row: dict[str, object]) -> bool:
    """Whether the row satisfies the condition (see the module docstring)."""
    cell = row.get(condition.name)
    if condition.op not in ORDER:
        return equals(cell, condition.value) == (condition.op == "=")
    compare, number = ORDER[condition.op], as_number(condition.value)
    if number is not None:
        return as_number(cell) is not None and compare(as_number(cell), number)
    return isinstance(cell, str) and cell != "" and compare(cell.casefold(), condition.value.casefold())


def equals(cell: object, value: str) -> bool:
    """`=`: numbers by value, None as '' or 'none', everything else as text ignoring case."""
    if cell is None or cell == "":
        return value.lower() in ("", "none")
    cell_number, number = as_number(cell), as_number(value)
    if cell_number is not None and number is not None:
        return cell_number == number
    text = " ".join(map(str, cell)) if isinstance(cell, list) else str(cell)
    return text.casefold() == value.casefold()


def as_number(value: object) -> float | None:
    """A number from an int, a float or numeric text (not from a bool), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def sort_rows(rows: list[dict[str, object]], column: str, descending: bool = False) -> list[dict[str, object]]:
    """Rows ordered by one column: numbers by value, then text alphabetically (`?`, a value
    that could not be read), then NaN (a diverged run: it compares with nothing, and among
    the numbers would scramble their order), then rows without a value; in that order either
    way, so `--sort best --desc` starts with the best number. Ties keep their order."""
    def kind(row: dict[str, object]) -> int:
        value = row.get(column)
        if value in (None, ""):
            return 3
        return 2 if is_nan(value) else sort_key(value)[0]  # 0: a number, 1: text

    ordered = sorted(rows, key=lambda row: sort_key(row[column]) if kind(row) < 2 else (0, 0.0, ""),
                     reverse=descending)
    return sorted(ordered, key=kind)  # stable: each kind keeps the order above


def is_nan(value: object) -> bool:
    return isinstance(value, float) and math.isnan(value)


def sort_key(value: object) -> tuple:
    number = as_number(value) if not isinstance(value, str) else None
    return (0, number, "") if number is not None else (1, 0.0, str(value).casefold())
