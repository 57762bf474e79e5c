"""Extending the template the documented way keeps the test suite green (docs/extending.md).

In a copy of the project: a model and a data set from the scaffold, a loss with a flag of its
own, a metric, an optimizer with a flag of its own and a task, each added as the docs say
(one file or class, one dict line). Then the suite's registry-driven tests run in that copy,
and a short run trains with the new loss and optimizer: its new metric reaches metrics.csv,
and eval.py's loss equals validation's to the last digit. A test that pinned what a user is
expected to add to (registry contents, metric names, columns) would fail here.
"""

import csv
from pathlib import Path

import pytest
from helpers import EVENT_DEADLINE, copy_project, run_python

pytestmark = pytest.mark.slow

POLY_LOSS = '''class PolyLoss(nn.Module):
    """Poly-1 loss (Leng et al. 2022): cross entropy plus epsilon x (1 - the true class's probability).

    Args:
        poly_epsilon: the weight of the polynomial term (0: cross entropy)
    """

    def __init__(self, ignore_index: int = NO_IGNORE, poly_epsilon: float = 1.0) -> None:
        super().__init__()
        self.ignore_index, self.epsilon = ignore_index, poly_epsilon

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        ce = F.cross_entropy(pred, target, ignore_index=self.ignore_index, reduction="none")
        return (ce + self.epsilon * (1 - (-ce).exp())).mean()


'''
KAPPA = '''

def cohen_kappa(confusion: Tensor) -> float:
    """Agreement beyond chance: (observed - expected) / (1 - expected)."""
    confusion = confusion.double()
    total = confusion.sum()
    observed = confusion.diagonal().sum() / total
    expected = (confusion.sum(0) * confusion.sum(1)).sum() / total**2
    return ((observed - expected) / (1 - expected)).item()
'''
RMSPROP = '''def rmsprop(params: Iterable, lr: float, weight_decay: float,
            alpha: float = 0.99) -> torch.optim.Optimizer:
    """RMSprop.

    Args:
        alpha: the decay of the running mean of squared gradients
    """
    return torch.optim.RMSprop(params, lr=lr, alpha=alpha, weight_decay=weight_decay)


'''
# The suite's tests that read the registries, the metrics and the files a run writes.
REGISTRY_DRIVEN = ["tests/test_options.py", "tests/test_bad_input.py", "tests/test_model.py", "tests/test_data.py",
                   "tests/test_metrics.py", "tests/test_train.py", "tests/test_eval.py", "tests/test_predict.py",
                   "tests/test_layers.py", "tests/test_scaffold.py"]


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{path}: the documented place {old!r} is gone; update docs/extending.md and this test"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def add_import(path: Path, line: str) -> None:
    """Put an import line where a user (or ruff's isort) puts it: in order among its package's."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    package = line.split(".")[0] + "."
    siblings = [i for i, old in enumerate(lines) if old.startswith(package)]
    assert siblings, f"{path}: no {package} imports to add {line!r} beside; update this test"
    later = [i for i in siblings if lines[i] > line]
    lines.insert(later[0] if later else siblings[-1] + 1, line + "\n")
    path.write_text("".join(lines), encoding="utf-8")


def extend(root: Path) -> None:
    """The six extensions, as docs/extending.md describes them."""
    for kind, name in (("model", "ext_net"), ("dataset", "ext_set")):
        result = run_python(["-m", "scaffold", kind, name], cwd=root)
        assert result.returncode == 0, result.stdout + result.stderr
    edit(root / "loss.py", "LOSSES = {\n", POLY_LOSS + 'LOSSES = {\n    "poly": PolyLoss,\n')
    (root / "metrics.py").write_text((root / "metrics.py").read_text() + KAPPA)
    task = root / "tasks" / "classification.py"
    edit(task, 'results = {"acc": overall_accuracy(confusion), ',
         'results = {"acc": overall_accuracy(confusion), "kappa": cohen_kappa(confusion), ')
    edit(task, "from metrics import add_confusion, ", "from metrics import add_confusion, cohen_kappa, ")
    edit(root / "utils" / "optim.py", "OPTIMIZERS = {\n", RMSPROP + 'OPTIMIZERS = {\n    "rmsprop": rmsprop,\n')
    copied = task.read_text().replace("class ClassificationTask", "class OtherTask")
    (root / "tasks" / "other_task.py").write_text(copied.replace('name = "classification"', 'name = "other_task"'))
    edit(root / "tasks" / "__init__.py", "TASKS = {\n", 'TASKS = {\n    "other_task": OtherTask,\n')
    add_import(root / "tasks" / "__init__.py", "from tasks.other_task import OtherTask")


@pytest.fixture(scope="module")
def extended(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = copy_project(tmp_path_factory.mktemp("extended"))
    extend(root)
    return root


def test_the_suite_stays_green_after_every_documented_extension(extended: Path) -> None:
    result = run_python(["-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-n", "0", "-m", "not gpu",
                         *REGISTRY_DRIVEN], cwd=extended, timeout=EVENT_DEADLINE)
    assert result.returncode == 0, result.stdout[-4000:]
    ruff = run_python(["-m", "ruff", "check", "--no-cache", "."], cwd=extended)
    assert ruff.returncode == 0, ruff.stdout  # the extensions as written pass the linter too


def test_the_new_components_train_with_their_own_flags(extended: Path, tiny_demo: Path) -> None:
    checkpoints = extended / "ext_runs"
    argv = ["--train_list", str(tiny_demo / "train.txt"), "--val_list", str(tiny_demo / "val.txt"),
            "--checkpoints_dir", str(checkpoints), "--epochs", "1", "--batch_size", "16", "--num_workers", "0",
            "--model_type", "ext_net", "--width", "8", "--loss", "poly", "--poly_epsilon", "0.5",
            "--optimizer", "rmsprop", "--alpha", "0.9"]
    result = run_python(["train.py", *argv], cwd=extended)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = checkpoints.iterdir()
    with open(run_dir / "metrics.csv") as file:
        row = next(csv.DictReader(file))
    assert {"train/kappa", "val/kappa"} <= set(row)
    assert "--poly_epsilon" in run_python(["train.py", "-h"], cwd=extended).stdout  # every loss's flags are listed
    result = run_python(["eval.py", "--load_model_path", str(run_dir / "last.pth"), "--num_workers", "0"],
                        cwd=extended)
    assert result.returncode == 0, result.stderr[-3000:]
    (result_dir,) = (run_dir / "last").iterdir()
    lines = dict(line.split(": ") for line in (result_dir / "result.txt").read_text().splitlines())
    assert float(lines["loss"]) == pytest.approx(float(row["val/loss"]), abs=5e-7)  # the same poly loss, epsilon 0.5
