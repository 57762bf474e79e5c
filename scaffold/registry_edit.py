"""Add one entry to a registry file (`MODELS` in model/model_entry.py, `DATASETS` in
data/data_entry.py) the way a person would: one line in the dict, one import line.

Why text edits and not parsing and re-printing: the file is the user's, with their comments,
blank lines and formatting, and the diff must be exactly the two added lines. The new entry
goes right after the dict's last entry, with the indentation of its entries; the import goes
among the imports of the same package, in the sorted place ruff's isort rule (I001) expects.
"""

import re

from utils.errors import UserError

# A trailing comment: `#` and what follows, provided no quote comes after it (not inside a string).
TRAILING_COMMENT = re.compile(r"\s*#[^\"']*$")


def registry_keys(text: str, dict_name: str, file_name: str) -> list[str]:
    """The string keys written in the dict literal `dict_name = {...}` of `text`."""
    lines = text.splitlines(keepends=True)
    start, end = _find_dict(lines, dict_name, file_name)
    keys = [re.match(r"\s*[\"']([^\"']*)[\"']\s*:", line) for line in lines[start + 1:end]]
    return [key.group(1) for key in keys if key]


def add_registry_entry(text: str, dict_name: str, entry: str, import_line: str, file_name: str) -> str:
    """`text` with `entry` (e.g. `"my_net": MyNet,`) added to the dict and `import_line`
    (e.g. `from model.my_net import MyNet`) added to the imports."""
    lines = text.splitlines(keepends=True)
    newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    start, end = _find_dict(lines, dict_name, file_name)
    codes = [i for i in range(start + 1, end) if _is_code(lines[i])]
    indent = re.match(r"\s*", lines[codes[0]]).group() if codes else "    "
    if codes and not _code_part(lines[codes[-1]]).endswith((",", "{")):
        lines[codes[-1]] = _add_comma(lines[codes[-1]])  # or the new entry would not parse
    lines.insert(codes[-1] + 1 if codes else start + 1, indent + entry + newline)
    lines.insert(_import_position(lines[:start], import_line, file_name), import_line + newline)
    return "".join(lines)


def _find_dict(lines: list[str], dict_name: str, file_name: str) -> tuple[int, int]:
    """Line numbers of `dict_name = {` and of its closing `}` (at the start of a line)."""
    opening = re.compile(rf"{dict_name}\s*(:[^=]*)?=\s*\{{\s*(#.*)?$")
    start = next((i for i, line in enumerate(lines) if opening.match(line.rstrip())), len(lines))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("}")), None)
    if end is None:
        raise UserError(f"Could not find the dict `{dict_name} = {{` ... `}}` (one entry a line, "
                        f"closing brace at the start of a line) in {file_name}; restore that layout "
                        "or add the entry and its import by hand.")
    return start, end


def _is_code(line: str) -> bool:
    return bool(line.strip()) and not line.lstrip().startswith("#")


def _code_part(line: str) -> str:
    return TRAILING_COMMENT.sub("", line.rstrip("\r\n")).rstrip()


def _add_comma(line: str) -> str:
    code = _code_part(line)
    return code + "," + line[len(code):]


def _import_position(head: list[str], import_line: str, file_name: str) -> int:
    """Where `from <package>.<module> import ...` goes among the lines before the dict: before
    the first import of the same package that sorts after it, else after the last one."""
    package, module = re.match(r"from (\w+)\.(\S+) import", import_line).groups()
    same_package = [(i, m.group(1)) for i, line in enumerate(head)
                    if (m := re.match(rf"from {package}\.(\S+) import", line))]
    for i, other in same_package:
        if _sort_key(other) > _sort_key(module):
            return i
    imports = same_package or [(i, "") for i, line in enumerate(head) if re.match(r"(from|import) ", line)]
    if not imports:
        raise UserError(f"Found no import lines before the registry in {file_name}; "
                        f"add `{import_line}` by hand.")
    return _statement_end(head, imports[-1][0]) + 1


def _statement_end(lines: list[str], i: int) -> int:
    """The last line of the statement starting at line `i` (a parenthesised import spans several)."""
    if "(" in lines[i] and ")" not in lines[i]:
        while i + 1 < len(lines) and ")" not in lines[i]:
            i += 1
    return i


def _sort_key(module: str) -> list:
    """isort's order as ruff applies it: case-insensitive, numbers by value (net2 before net10)."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part.lower())
            for part in re.split(r"(\d+)", module)]
