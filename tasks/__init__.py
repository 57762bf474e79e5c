"""The task registry: a data set's `task` attribute -> the class that knows its labels.

A task says what the loops cannot know by themselves: its loss by default, how labels are
checked, counted and turned into metrics, how predictions are drawn and written. Every
member is listed, with what it is for, in the `Task` protocol (tasks/task.py); what it
counts goes into a `Meter` (tasks/task.py too). To add a task: a file `tasks/<name>.py` with
one class (copy classification.py) and one line in `TASKS`.
"""

from torch import Tensor, nn

from loss import LOSSES, SUPPLIED, balanced_weights
from tasks.classification import ClassificationTask
from tasks.multilabel import MultiLabelTask
from tasks.regression import RegressionTask
from tasks.segmentation import SegmentationTask
from tasks.task import Meter, Task
from utils.errors import UserError
from utils.signature_flags import builder_kwargs, described_values, flag_parameters, foreign_flags

__all__ = ["TASKS", "Meter", "Task", "check_loss_flags", "select_loss", "select_task"]

TASKS = {
    "classification": ClassificationTask,
    "segmentation": SegmentationTask,
    "multilabel": MultiLabelTask,
    "regression": RegressionTask,
}


def select_task(name: str, class_names: list[str], ignore_index: int) -> Task:
    """The task a data set serves, sized for its classes."""
    if name not in TASKS:
        raise UserError(f"Unknown task {name!r} (from the data set); valid names: {', '.join(TASKS)}.")
    return TASKS[name](class_names, ignore_index)


def select_loss(flags: dict[str, object], task: Task,
                training_labels: Tensor | None = None) -> tuple[nn.Module, dict[str, object]]:
    """`--loss` (or the task's default) built with its flags and what the task supplies (e.g.
    ignore_index): the one place a loss is made, for training, validation and eval.py, so
    their losses agree to the last digit. Returns the loss and what it was built with
    (`{"loss": name, its flags...}`, saved as the checkpoint's loss_kwargs). `--class_weights
    auto` becomes numbers here, from `training_labels`, and is saved as those."""
    name = flags.get("loss") or task.default_loss
    if name not in LOSSES:
        raise UserError(f"Unknown --loss {name!r}; valid names: {', '.join(LOSSES)}.")
    if flags.get("class_weights") == "auto":
        if training_labels is None:
            raise UserError("--class_weights auto needs the training labels (class ids or several 0 / 1 labels); "
                            "this data set has none to count: give one number per class.")
        weights = balanced_weights(training_labels, len(task.class_names))
        flags = flags | {"class_weights": ",".join(f"{w:.6g}" for w in weights)}
    refuse_foreign_flags(name, flags, f"--loss {name}" if flags.get("loss") else f"{name}, the {task.name} default")
    return build_loss(name, flags, task.loss_supplied)


def refuse_foreign_flags(name: str, flags: dict[str, object], chosen: str) -> None:
    """A loss flag given that the run's loss does not take would be ignored without a word."""
    for flag, owners in foreign_flags(LOSSES[name], LOSSES, flags, SUPPLIED).items():
        raise UserError(f"--{flag} {flags[flag]} is a flag of --loss {' / '.join(owners)}, but this run's loss is "
                        f"{chosen}; add --loss {owners[0]}, or leave --{flag} out.")


def build_loss(name: str, flags: dict[str, object], supplied: dict[str, object]) -> tuple[nn.Module, dict]:
    """LOSSES[name] with its flags' values and those of `supplied` it takes; a value it
    refuses (it raises ValueError) is a UserError naming the values."""
    builder = LOSSES[name]
    kwargs = builder_kwargs(builder, flags, SUPPLIED)
    wanted = {p.name for p in flag_parameters(builder, ())}
    try:
        loss = builder(**{key: value for key, value in supplied.items() if key in wanted}, **kwargs)
    except (ValueError, TypeError) as error:
        raise UserError(f"--loss {name} cannot be built with {described_values(builder, kwargs)}: {error}") from None
    return loss, {"loss": name, **kwargs}


def check_loss_flags(flags: dict[str, object]) -> None:
    """Each loss a loss flag given on the command line belongs to, built once: a value it
    refuses is reported at start-up, before the data tells which loss trains."""
    if flags.get("loss"):
        refuse_foreign_flags(flags["loss"], flags, f"--loss {flags['loss']}")
    given = {name for name, value in flags.items() if value is not None}
    flags = flags | ({"class_weights": "none"} if flags.get("class_weights") == "auto" else {})  # numbers later
    for name, builder in LOSSES.items():
        if flags.get("loss") in (None, name) and given & {p.name for p in flag_parameters(builder, SUPPLIED)}:
            build_loss(name, flags, {})
