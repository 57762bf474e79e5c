"""`python -m scaffold`: start your own project from this template, or add a model or a
data set to it, in one command.

    python -m scaffold project ../my-project --name my-project --git
    python -m scaffold model my_net      # model/my_net/, MODELS entry, scripts/train_my_net.sh
    python -m scaffold dataset my_set    # data/my_set.py, DATASETS entry

Each command takes `--dry-run` (print what would be written, write nothing). All the writes
of one command go through a `FileTransaction`: when anything fails, every file is put back
as it was, so the tree is never half-written. Standard library only; the generated files are
the templates in scaffold/templates.py.
"""

import argparse
import keyword
import os
import re
import signal
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from scaffold import templates
from scaffold.file_transaction import FileTransaction
from scaffold.project_files import project_files
from scaffold.registry_edit import add_registry_entry, registry_keys
from utils.errors import UserError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# Model and data set names become a package or module name and a --model_type / --data_type value.
COMPONENT_NAME = re.compile(r"[a-z][a-z0-9_]*")
# A project name as pip accepts it (PEP 508): letters, digits, `-`, `_`, `.`, alphanumeric at both ends.
PROJECT_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?")
# The template's own benchmarks and the figures they measured: a new project starts without them.
TEMPLATE_ONLY = ("bench/", "docs/performance.md")
# In a new project while it is being written: a destination holding it is one this command began.
INCOMPLETE = ".scaffold-incomplete"


@dataclass(frozen=True)
class Registry:
    """One of the two registries: what its entries are called and where the dict is."""

    kind: str  # "model" or "data set", for messages
    flag: str
    entry_file: str  # relative to the project root
    dict_name: str


MODELS = Registry("model", "--model_type", "model/model_entry.py", "MODELS")
DATASETS = Registry("data set", "--data_type", "data/data_entry.py", "DATASETS")


def camel_case(name: str) -> str:
    """`my_net` -> `MyNet`: the class name for a model or data set name."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def add_model(root: Path, name: str, dry_run: bool = False) -> FileTransaction:
    """Create model/<name>/ (a small working CNN), its MODELS entry and scripts/train_<name>.sh."""
    class_name = camel_case(name)
    check_new_name(root, MODELS, name, class_name, [f"model/{name}", f"model/{name}.py", f"scripts/train_{name}.sh"])
    values = {"name": name, "class_name": class_name}
    with FileTransaction(root, dry_run) as files:
        files.write_text(root / "model" / name / "__init__.py", templates.MODEL_INIT.format(**values))
        files.write_text(root / "model" / name / "model.py", templates.MODEL.format(**values))
        files.write_text(root / "scripts" / f"train_{name}.sh", templates.TRAIN_SCRIPT.format(**values), mode=0o755)
        register(files, MODELS, f'"{name}": {class_name},', f"from model.{name} import {class_name}")
    return files


def add_dataset(root: Path, name: str, dry_run: bool = False, task: str = "classification") -> FileTransaction:
    """Create data/<name>.py (a data set reading a list file; for several labels or numbers a
    CSV table) and its DATASETS entry."""
    class_name = camel_case(name) + "Dataset"
    builder = f"build_{name}"
    check_new_name(root, DATASETS, name, builder, [f"data/{name}.py", f"data/{name}"])
    template = templates.DATASET if task == "classification" else templates.TABLE_DATASET
    columns = {"multilabel": '("tags",)', "regression": '("size", "x", "y")'}.get(task, "")
    with FileTransaction(root, dry_run) as files:
        files.write_text(root / "data" / f"{name}.py", template.format(name=name, class_name=class_name, task=task,
                                                                       columns=columns))
        register(files, DATASETS, f'"{name}": {builder},', f"from data.{name} import {builder}")
    return files


def register(files: FileTransaction, registry: Registry, entry: str, import_line: str) -> None:
    """Add one entry line to the registry dict and its import line, keeping the rest as it is."""
    path = files.root / registry.entry_file
    text = path.read_bytes().decode("utf-8")  # not read_text: it would turn \r\n into \n
    files.write_text(path, add_registry_entry(text, registry.dict_name, entry, import_line, registry.entry_file))


def check_new_name(root: Path, registry: Registry, name: str, identifier: str, paths: list[str]) -> None:
    """Refuse a name that is not a lowercase identifier, is a keyword, or is already in use:
    registered, one of `paths` exists, or `identifier` (the name to import) is already used."""
    if not COMPONENT_NAME.fullmatch(name):
        raise UserError(f"The {registry.kind} name {name!r} is not valid: use lowercase letters, digits and "
                        f"underscores, starting with a letter (e.g. my_net); it becomes a Python module "
                        f"name and the value of {registry.flag}.")
    if keyword.iskeyword(name):
        raise UserError(f"The {registry.kind} name {name!r} is a Python keyword and cannot name a module; "
                        f"choose another, e.g. {name}_net.")
    text = (root / registry.entry_file).read_text(encoding="utf-8")
    taken = [f"{path}{'/' if (root / path).is_dir() else ''} exists" for path in paths if (root / path).exists()]
    if name in registry_keys(text, registry.dict_name, registry.entry_file):
        taken.insert(0, f"it is in {registry.dict_name} ({registry.entry_file})")
    elif re.search(rf"\b{identifier}\b", text):
        taken.append(f"{registry.entry_file} already uses the name {identifier}, which the entry would import")
    if taken:
        raise UserError(f"The {registry.kind} name {name!r} is taken: {'; '.join(taken)}. Choose a new name.")


def new_project(source: Path, dest: Path, name: str, force: bool = False, git: bool = False,
                dry_run: bool = False) -> FileTransaction:
    """Copy the project's files (see scaffold/project_files.py) from `source` into `dest`, named
    `name`; with `git`, also a new repository holding them in one commit."""
    check_project_name(name)
    check_destination(source, dest, force, git)
    relatives = [relative for relative in project_files(source)
                 if not relative.startswith(TEMPLATE_ONLY) and relative != INCOMPLETE]
    check_no_links(dest, relatives)
    old_name = read_project_name(source)
    with FileTransaction(dest, dry_run) as files:
        files.make_dirs(dest)
        if not dry_run:  # first in, last out: left by a command killed outright, so that the same command goes on
            files.write(dest / INCOMPLETE, b"python -m scaffold project stopped before writing every file\n")
        for relative in relatives:
            data = without_template_notes(relative, (source / relative).read_bytes())
            data = rename_project(relative, data, old_name, name)
            files.write(dest / relative, data, mode=stat.S_IMODE((source / relative).stat().st_mode))
        if not dry_run:
            (dest / INCOMPLETE).unlink()
            files.writes = [write for write in files.writes if write.path != dest / INCOMPLETE]  # not a project file
        if git and not dry_run:
            files.track_new_dir(dest / ".git")
            commit_everything(dest, f"{name}: new project from the PyTorch template")
    return files


def check_no_links(dest: Path, relatives: list[str]) -> None:
    """Refuse, before anything is written, a symbolic link inside `dest` on the way to a file
    the project writes (a linked sub-folder, or a linked file): --force writes inside the
    destination only, never through a link into a folder outside it."""
    for relative in relatives:
        path = dest
        for part in Path(relative).parts:
            path = path / part
            if path.is_symlink():
                raise UserError(f"{path} is a symbolic link (to {os.readlink(path)}); the project would be written "
                                "through it, outside the destination. Remove the link, or choose another folder.")
            if not path.exists():
                break


def without_template_notes(relative: str, data: bytes) -> bytes:
    """A Markdown file without what only the template's own repository needs: each line that
    holds `<!-- template-only -->`, and every line from `<!-- template-only:start -->` to
    `<!-- template-only:end -->` (its benchmarks and the figures they measured)."""
    if not relative.endswith(".md") or b"template-only" not in data:
        return data
    kept, skipping = [], False
    for line in data.decode("utf-8").splitlines(keepends=True):
        if "<!-- template-only:start -->" in line:
            skipping = True
        elif "<!-- template-only:end -->" in line:
            skipping = False
        elif not skipping and "<!-- template-only -->" not in line:
            kept.append(line)
    return "".join(kept).encode("utf-8")


def check_project_name(name: str) -> None:
    """A name pip accepts, so that pyproject.toml stays installable and the README title plain."""
    if not PROJECT_NAME.fullmatch(name):
        raise UserError(f"The project name {name!r} is not valid: use letters, digits, '-', '_' and '.', "
                        "starting and ending with a letter or digit (e.g. my-project); it becomes the "
                        "package name in pyproject.toml.")


def check_destination(source: Path, dest: Path, force: bool, git: bool) -> None:
    """Refuse, before anything is written: a file, a folder inside the template, a non-empty
    folder (unless `force`), or an existing repository when `git` should create one."""
    if dest.exists() and not dest.is_dir():
        raise UserError(f"The destination {dest} is a file; give a new or empty folder.")
    if dest.resolve().is_relative_to(source.resolve()):
        raise UserError(f"The destination {dest} is inside the template ({source}); choose a folder "
                        f"outside it, e.g. ../{dest.name}.")
    if dest.is_dir() and any(dest.iterdir()) and not force and not (dest / INCOMPLETE).is_file():
        raise UserError(f"The destination {dest} exists and is not empty; choose a new folder, or pass "
                        "--force to write the template's files into it (replacing files of the same name).")
    if git and (dest / ".git").exists():
        raise UserError(f"The destination {dest} is already a git repository; leave out --git.")


def read_project_name(source: Path) -> str | None:
    """`[project] name` from source's pyproject.toml (tomllib is not in Python 3.10)."""
    match = re.search(r'^\[project\][^\[]*?^name\s*=\s*"([^"]*)"', read_text(source / "pyproject.toml"), re.M | re.S)
    return match.group(1) if match else None


def read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8") if path.is_file() else ""


def rename_project(relative: str, data: bytes, old_name: str | None, name: str) -> bytes:
    """The file's bytes with the project's name put in: README title, pyproject.toml, PyCharm."""
    if relative == "README.md":
        text = re.sub(r"^# .*$", f"# {name}", data.decode("utf-8"), count=1, flags=re.M)
    elif relative == "pyproject.toml":
        text = re.sub(r'(^\[project\][^\[]*?^name\s*=\s*)"[^"]*"', rf'\g<1>"{name}"', data.decode("utf-8"),
                      count=1, flags=re.M | re.S)
    elif relative.startswith(".run/") and relative.endswith(".run.xml"):
        text = name_run_configuration(data.decode("utf-8"), old_name, name)
    else:
        return data
    return text.encode("utf-8")


def name_run_configuration(text: str, old_name: str | None, name: str) -> str:
    """Prefix the configuration's name (the label in PyCharm's run menu) with the project name,
    replacing the template's prefix if it has one: `train` -> `my-project train`.

    Why the label and not `<module name="...">`: PyCharm's module is named after the folder
    the project is opened from (in .idea/, which is not in the project), not after
    pyproject.toml; a module element naming anything else makes the configuration invalid
    until edited, while without it PyCharm uses the project's only module.
    """
    def prefixed(match: re.Match) -> str:
        label = match.group(2).removeprefix(f"{old_name} ") if old_name else match.group(2)
        return f'{match.group(1)}{name} {label}"'

    return re.sub(r'(<configuration\b[^>]*?\bname=")([^"]*)"', prefixed, text, count=1)


def commit_everything(dest: Path, message: str) -> None:
    """`git init`, then one commit of every file (.gitignore applies)."""
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", message]):
        try:
            subprocess.run(["git", *args], cwd=dest, capture_output=True, text=True, check=True)
        except FileNotFoundError:
            raise UserError("--git needs the `git` command, which was not found; install git or "
                            "leave out --git.") from None
        except subprocess.CalledProcessError as error:
            reason = (error.stderr or error.stdout).strip().splitlines()[-1:]
            raise UserError(f"`git {' '.join(args[:1])}` failed ({' '.join(reason)}); nothing was written. "
                            "Fix git (e.g. set user.name and user.email) or leave out --git.") from None


def build_parser() -> argparse.ArgumentParser:
    usage_and_examples = "\n\n".join(__doc__.split("\n\n")[:2])  # the module docstring's start
    parser = argparse.ArgumentParser(prog="python -m scaffold", description=usage_and_examples,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="{project,model,dataset}")
    project = commands.add_parser("project", help="write a new project: a clean copy of this template")
    project.add_argument("dest", type=Path, help="the new project's folder (new or empty)")
    project.add_argument("--name", help="the project's name (default: the folder's name), e.g. my-project")
    project.add_argument("--git", action="store_true", help="make it a git repository with one initial commit")
    project.add_argument("--force", action="store_true", help="write into a folder that is not empty")
    for command, what, registry in (("model", "model/<name>/", MODELS), ("dataset", "data/<name>.py", DATASETS)):
        sub = commands.add_parser(command, help=f"add {what} and its {registry.dict_name} entry")
        sub.add_argument("name", help=f"a new lowercase Python identifier, e.g. my_net: the {registry.flag} value")
        if command == "dataset":
            sub.add_argument("--task", default="classification", choices=["classification", "multilabel", "regression"],
                             help="what its labels are: a class a picture (a list file), several labels or numbers "
                                  "(a CSV table) (default: %(default)s)")
    for sub in commands.choices.values():
        sub.add_argument("--dry-run", action="store_true", help="print what would be written; write nothing")
    return parser


def run(args: argparse.Namespace, root: Path) -> FileTransaction:
    """Carry out the parsed command on the project at `root`."""
    if args.command == "model":
        return add_model(root, args.name, args.dry_run)
    if args.command == "dataset":
        return add_dataset(root, args.name, args.dry_run, args.task)
    return new_project(root, args.dest, args.name or args.dest.resolve().name, force=args.force,
                       git=args.git, dry_run=args.dry_run)


def next_steps(args: argparse.Namespace) -> str:
    """What to do after the command, shown when it succeeded."""
    if args.command == "model":
        return (f"Next: edit model/{args.name}/model.py, then `bash scripts/train_{args.name}.sh` "
                f"(or `python train.py --model_type {args.name}`).")
    if args.command == "dataset":
        lists = "" if args.task == "classification" else \
            " --train_list data/demo/train.csv --val_list data/demo/val.csv"
        return f"Next: edit data/{args.name}.py, then `python train.py --data_type {args.name}{lists}`."
    return f"Next: cd {args.dest} && bash scripts/demo.sh"


class Stopped(Exception):
    """SIGTERM while writing: raised so that the transaction puts every file back."""


def stop(number: int, frame: object) -> None:
    raise Stopped(number)


def main(argv: list[str] | None = None, root: Path = PROJECT_ROOT) -> int:
    """Entry point; a UserError, a failed write (a full disk) or a stop (Ctrl-C, SIGTERM)
    becomes one line on stderr, and every file is put back as it was."""
    args = build_parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        files = run(args, root)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"error: {error}; every file was put back as it was.", file=sys.stderr)
        return 2
    except (Stopped, KeyboardInterrupt) as error:
        number = error.args[0] if isinstance(error, Stopped) else signal.SIGINT
        print(f"error: stopped by {signal.Signals(number).name}; every file was put back as it was.", file=sys.stderr)
        return 128 + number
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(report(args, files))
    return 0


def report(args: argparse.Namespace, files: FileTransaction) -> str:
    """What was written (or, with --dry-run, would be), and what to do next."""
    git = args.command == "project" and args.git
    if args.dry_run:
        return files.describe() + ("\nthen: git init, one commit" if git else "") + "\nDry run: nothing was written."
    if args.command == "project":
        done = f"Created {args.dest} ({len(files.writes)} files{', git repository with one commit' if git else ''})."
    else:
        done = files.summary()
    return f"{done}\n{next_steps(args)}"

