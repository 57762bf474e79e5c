"""The files `python -m scaffold model|dataset <name>` writes, as plain text to edit.

Each is filled with `str.format`: `{name}` is the name given on the command line (the
--model_type / --data_type value and the file or package name), `{class_name}` its
CamelCase form. A literal brace is written twice: `{{` and `}}`. What comes out must pass
`ruff check` with the project's settings (tests/test_scaffold.py checks it).
"""

MODEL_INIT = '''"""The model `{name}` (--model_type {name}); the code is in model.py."""

from model.{name}.model import {class_name}

__all__ = ["{class_name}"]
'''

MODEL = '''"""{class_name}: a small CNN to start from; made by `python -m scaffold model {name}`.

Edit the layers in `__init__` and how they are applied in `forward`. Keep the two
constructor parameters `num_classes` and `in_channels`: model/model_entry.py sizes every
model for the data with them. Every other typed keyword with a default is a flag by itself:
`width` is `--width` (see `python train.py --model_type {name} -h`), saved with the run and
taken up by eval.py and --resume, with the `Args:` line below as its help; add your own the
same way, e.g. `dropout: float = 0.1`.
Train it with `python train.py --model_type {name} --width 64`.
"""

from torch import Tensor, nn

from model.submodules import conv_bn_relu


class {class_name}(nn.Module):
    """Two conv-bn-relu stages, global average pooling and a linear classifier.

    The pooling makes it accept any input size; its output is one score per class.

    Args:
        width: channels of the first convolution (the second has twice as many)
    """

    def __init__(self, num_classes: int, in_channels: int = 3, width: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            conv_bn_relu(in_channels, width),
            nn.MaxPool2d(2),
            conv_bn_relu(width, width * 2),
            nn.AdaptiveAvgPool2d(1),
        )
        self.classifier = nn.Linear(width * 2, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x).flatten(1))
'''

TRAIN_SCRIPT = '''#!/usr/bin/env bash
# Experiment: model/{name} on the demo shapes; made by `python -m scaffold model {name}`.
# Edit the flags for your experiment. Extra flags are passed on, e.g. `bash scripts/train_{name}.sh --epochs 1`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/find_python.sh
"$PYTHON" train.py --model_type {name} --data_type list \\
    --train_list data/demo/train.txt --val_list data/demo/val.txt \\
    --optimizer adamw --lr 3e-3 --scheduler cosine --epochs 10 --batch_size 64 \\
    --save_prefix demo "$@"
'''

TABLE_DATASET = '''"""{class_name}: pictures and their {task} labels from a CSV table; made by
`python -m scaffold dataset {name} --task {task}`.

A row a picture: a `path` column and the label column(s), `--label_columns` (the demo's
data/demo/train.csv has them: `python train.py --data_type {name} --train_list
data/demo/train.csv --val_list data/demo/val.csv`). data/csv_table.py reads the table (its
docstring has the rules); edit `build_{name}` to find your samples another way, keeping the
task: the loss, metrics and pictures of tasks/{task}.py serve it.
"""

from data.augment import Augment
from data.csv_table import read_csv_samples
from data.demo_data import ensure_demo_data
from data.list_dataset import ListDataset, open_samples


def build_{name}(list_path: str, train: bool, augment: Augment,
        label_columns: tuple[str, ...] = {columns}, image_size: int = 32) -> ListDataset:
    """Registry builder (see data/data_entry.py): it takes only what it uses. `list_path`,
    `train` and `augment` are handed over by the loaders; every other typed parameter with a
    default is a flag by itself (`label_columns` is --label_columns): add your own the same way."""
    ensure_demo_data(list_path)  # draws the demo set if a file under data/demo/ is missing
    samples = read_csv_samples(list_path, "path", label_columns, task="{task}")
    return open_samples(samples, train, augment, image_size, in_memory=False)
'''

DATASET = '''"""{class_name}: samples from a list file; made by `python -m scaffold dataset {name}`.

It starts as the simplest list-file data set (one `<image path> <class id>` line per
sample, see README.md) so that `python train.py --data_type {name}` works at once on the
demo lists. Edit `__init__` to find your samples (a folder walk, a CSV, ...) and
`__getitem__` to read one; keep the item keys and the four attributes, which train.py,
eval.py and the model registry rely on. The transforms are in data/augment.py.
"""

from collections.abc import Callable
from pathlib import Path

from torch.utils.data import Dataset

from data.augment import Augment, eval_transform, train_transform
from data.demo_data import ensure_demo_data
from data.list_dataset import load_image, read_class_names, read_list_file
from utils.errors import UserError


class {class_name}(Dataset):
    """Items are dicts: `image` (float tensor C x H x W), `label` (class id), `path` (str)."""

    def __init__(self, list_path: str | Path, transform: Callable) -> None:
        self.entries = read_list_file(list_path)
        if not isinstance(self.entries[0].label, int):
            raise UserError(f"{{list_path}} lists label images; the data type {name} reads class ids "
                            "(`<image path> <class id>` lines).")
        self.transform = transform
        self.task = "classification"  # selects the loss, metrics and pictures in tasks/
        self.in_channels = 3  # load_image decodes every picture as RGB
        names = read_class_names(list_path, dense=False)  # classes.txt beside the list, if any
        self.class_names = names or [str(i) for i in range(max(e.label for e in self.entries) + 1)]
        self.num_classes = len(self.class_names)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> dict:
        entry = self.entries[index]
        image = load_image(entry.image, entry.where)
        return {{"image": self.transform(image), "label": entry.label, "path": str(entry.image)}}


def build_{name}(list_path: str, train: bool, augment: Augment, image_size: int = 32) -> {class_name}:
    """Registry builder (see data/data_entry.py): it takes only what it uses. `list_path`,
    `train` and `augment` are handed over by the loaders; every other typed parameter with a
    default is a flag by itself (`image_size` is --image_size): add your own the same way."""
    ensure_demo_data(list_path)  # draws the demo set if a list under data/demo/ is missing
    transform = train_transform(augment, image_size) if train else eval_transform(image_size, augment=augment)
    return {class_name}(list_path, transform)
'''
