"""template_flags.py: -h and a bad value of one of the template's own flags answer before torch
is imported (issue 29: every error and -h waited 3.6 s for torch on a quiet machine, 13-60 s on
a busy one); -h's first screen shows the common flags; predict.py lists only flags it uses."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import EVENT_DEADLINE, REPO

import options

HEAVY = ("torch", "torchvision", "tensorboard", "numpy", "PIL")


def module_level_imports(module: str) -> set[str]:
    """The project modules and packages a module imports when it is imported (imports inside
    functions run later, when called), followed through the project's own modules."""
    seen, todo, outside = set(), [module], set()
    while todo:
        name = todo.pop()
        path = REPO / (name.replace(".", "/") + ".py")
        if not path.is_file():
            path = REPO / name.replace(".", "/") / "__init__.py"
        if name in seen or not path.is_file():
            continue
        seen.add(name)
        for node in ast.parse(path.read_text(encoding="utf-8")).body:  # module level only
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            for imported in names:
                outside.add(imported.split(".")[0])
                todo.append(imported)
    return outside


def test_template_flags_imports_nothing_that_loads_torch() -> None:
    """A check that fails the day someone adds a heavy import to the early path."""
    assert not set(HEAVY) & module_level_imports("template_flags")
    assert {"torch"} & module_level_imports("options")  # the check can fail: options.py does load torch


def python(*args: str) -> subprocess.CompletedProcess:
    """`python -X importtime -u <args>`, stdout and stderr in one stream, in the order written."""
    return subprocess.run([sys.executable, "-X", "importtime", "-u", *args], cwd=REPO, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=EVENT_DEADLINE,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})


def first_torch_import(output: str) -> int:
    """Where the first line of -X importtime for torch is (len(output) if there is none)."""
    lines = output.splitlines(keepends=True)
    index = next((i for i, line in enumerate(lines) if line.startswith("import time:")
                  and line.rsplit("|", 1)[-1].strip() == "torch"), len(lines))
    return sum(len(line) for line in lines[:index])


@pytest.mark.slow
@pytest.mark.parametrize("argv, message", [
    (["train.py", "--epochs", "0"], "error: --epochs 0 must be 1 or more."),
    (["train.py", "--lr", "fast"], "error: argument --lr: invalid float value: 'fast'"),
    (["eval.py", "--batch_size", "0"], "error: --batch_size 0 must be 1 or more."),
    (["predict.py", "--input", "x", "--top_k", "0"], "error: --top_k 0 must be 1 or more."),
])
def test_a_bad_value_of_a_template_flag_is_refused_before_torch_is_imported(argv: list[str], message: str) -> None:
    result = python(*argv)
    assert result.returncode == 2 and message in result.stdout
    assert first_torch_import(result.stdout) == len(result.stdout)  # torch never imported


@pytest.mark.slow
@pytest.mark.parametrize("prog", ["train.py", "eval.py", "predict.py"])
def test_help_shows_the_common_flags_before_torch_is_imported_then_the_components(prog: str) -> None:
    result = python(prog, "-h")
    assert result.returncode == 0
    out, torch_at = result.stdout, first_torch_import(result.stdout)
    assert out.index(f"usage: python {prog}") < out.index("common:") < out.index("  --batch_size BATCH_SIZE") < torch_at
    assert torch_at < out.index("model base:") < len(out)  # the components' flags, read after
    assert "names to choose from (the registries):\n  --model_type: base, " in out
    usage = out[out.index("usage:"):out.index("\n\n")]
    assert len(usage.splitlines()) <= 3  # not a synopsis of every flag (it was 37 lines)


@pytest.mark.slow
def test_help_into_a_pipe_that_closes_early_ends_quietly() -> None:
    result = subprocess.run(["bash", "-c", f"set -o pipefail; {sys.executable} train.py -h | head -n 2"], cwd=REPO,
                            capture_output=True, text=True, timeout=EVENT_DEADLINE)
    assert result.returncode == 0 and result.stderr == "" and result.stdout.startswith("usage: python train.py")


def test_the_first_screen_of_help_is_the_usage_and_the_common_flags(capsys) -> None:
    with pytest.raises(SystemExit):
        options.template_parser("train.py", {}).parse_args(["-h"])
    first_screen = capsys.readouterr().out.splitlines()[:25]
    assert first_screen[0].startswith("usage: python train.py [--model_type NAME]")
    assert "common:" in first_screen and any(line.startswith("  --model_type") for line in first_screen)


def flags_of(prog: str) -> set[str]:
    return {s for a in options.build_parser(prog)._actions for s in a.option_strings if s.startswith("--")}


def test_predict_lists_only_flags_it_uses() -> None:
    """predict.py reads pictures at the checkpoint's size and trains nothing (issue 29)."""
    unused = {"--val_list", "--ignore_index", "--seed", "--image_size", "--in_memory", "--loss", "--label_smoothing",
              "--save_viz"}
    assert not unused & flags_of("predict.py")
    assert {"--input", "--top_k", "--load_model_path", "--batch_size", "--width"} <= flags_of("predict.py")
    assert "--seed" not in flags_of("eval.py") and {"--val_list", "--deterministic"} <= flags_of("eval.py")


def test_what_predict_has_no_flag_for_is_as_the_model_was_trained(trained_run: Path, tmp_path: Path) -> None:
    args, checkpoint = options.parse_predict_args(["--load_model_path", str(trained_run), "--input", str(tmp_path)])
    for name in ("image_size", "ignore_index", "seed"):
        assert getattr(args, name) == checkpoint["args"][name]
