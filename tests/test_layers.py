"""The layering holds: a module never imports one above it in the flow
options -> data/model entries -> components -> Trainer/Evaluator -> run records.

Read from the imports themselves (ast), so a new file is checked the moment it exists. The
ranks, lowest first (a module may import its own rank and those below):
  0  utils/            what train.py and eval.py use at run time: run folders and records,
                       logging, checkpoints, devices; imports nothing of the project above it
  1  components        loss.py, metrics.py, tasks.py, data/*, model/* (not the entries)
  2  entries           data/data_entry.py, model/model_entry.py: the registries
  3  options.py        flags and their checks (template_flags.py: the template's own flags)
  4  entry points      train.py, eval.py, predict.py: Trainer, Evaluator
  5  tools             runs/, scaffold/, tools/, bench/: they use the rest, nothing uses them
"""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ENTRIES = {"data.data_entry", "model.model_entry"}
ENTRY_POINTS = {"train", "eval", "predict"}
TOOLS = ("runs", "scaffold", "tools", "bench")


def rank(module: str) -> int | None:
    """The layer of a project module (None for modules outside the project)."""
    top = module.split(".")[0]
    if top == "utils":
        return 0
    if module in ENTRIES:
        return 2
    if top in ("loss", "metrics", "tasks", "data", "model"):
        return 1
    if top in ("options", "template_flags"):
        return 3
    if top in ENTRY_POINTS:
        return 4
    if top in TOOLS:
        return 5
    return None


def project_modules() -> dict[str, Path]:
    """Every project module by its dotted name (tests excluded: they may import anything)."""
    skipped = {".venv", "tests", "checkpoints", ".git"}
    files = [p for p in REPO.rglob("*.py") if not skipped & set(p.relative_to(REPO).parts)]
    return {".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__"): p for p in files}


def imported_modules(path: Path, module: str) -> set[str]:
    """The modules a file imports, at any depth of the file (lazy imports count too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module if node.level == 0 else ".".join(module.split(".")[:-node.level] + [node.module])
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # `from data import data_entry`
    return names


def upward_imports(modules: dict[str, Path]) -> list[str]:
    found = []
    for module, path in sorted(modules.items()):
        own = rank(module)
        for name in sorted(imported_modules(path, module)):
            other = rank(name)
            if own is not None and other is not None and other > own:
                found.append(f"{path.name} (rank {own}) imports {name} (rank {other})")
    return found


def test_no_module_imports_one_above_it() -> None:
    assert upward_imports(project_modules()) == []


def test_the_check_finds_an_upward_import(tmp_path: Path) -> None:
    """A check that cannot fail is a defect: an upward import, even a lazy one, is reported."""
    planted = tmp_path / "planted.py"
    planted.write_text("def later():\n    from options import parse_train_args\n")
    found = upward_imports({"utils.planted": planted})
    assert found[0] == "planted.py (rank 0) imports options (rank 3)"


@pytest.mark.parametrize("module, expected", [("utils.run_dir", 0), ("tasks", 1), ("data.augment", 1),
                                              ("data.data_entry", 2), ("options", 3),
                                              ("template_flags", 3), ("train", 4), ("runs.sweep", 5),
                                              ("scaffold.commands", 5), ("tools.lr_find", 5)])
def test_ranks(module: str, expected: int) -> None:
    assert rank(module) == expected
