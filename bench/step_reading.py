"""How much code a reader follows for one training step: every project function that runs.

Why: the template should be as easy to read as a hand-written loop. This trains the demo's
base model for a few steps in this process and records, with `sys.setprofile`, every
function of the project (not torch, not the tests) that runs during one ordinary training
step: from the loader handing out batch `--step` to the loop asking for the next one (the
data loading itself is left out, and so are steps that draw pictures or save). It prints
each function with its length and the totals, with and without the model's own code.

    python bench/step_reading.py              # step 3 of the default run
    python bench/step_reading.py -- --ema_decay 0.99 --mixup 0.2   # flags after -- go to train.py
"""

import argparse
import inspect
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from types import CodeType, FrameType

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch.utils.data.dataloader as dataloader  # noqa: E402

import train  # noqa: E402
from data.demo_data import generate_demo_data  # noqa: E402


class StepTracer:
    """Records the project's code objects called between two batches of the first loader."""

    def __init__(self, step: int) -> None:
        self.step, self.batches, self.loader = step, 0, None
        self.called: set[CodeType] = set()

    def profile(self, frame: FrameType, event: str, arg: object) -> None:
        if event == "call":
            self.called.add(frame.f_code)

    def wrap(self, original):
        def next_batch(iterator):
            if self.loader is None:
                self.loader = iterator  # the first loader iterated: the training set's
            if iterator is not self.loader:
                return original(iterator)
            sys.setprofile(None)  # asking for the next batch ends the traced step
            batch = original(iterator)
            self.batches += 1
            if self.batches == self.step:  # the loop the step runs in counts too
                frame = sys._getframe(1)
                while frame is not None:
                    self.called.add(frame.f_code)
                    if not frame.f_code.co_flags & inspect.CO_GENERATOR:  # the function holding the loop
                        break
                    frame = frame.f_back
                sys.setprofile(self.profile)
            return batch
        return next_batch


def own_functions(codes: set[CodeType]) -> dict[str, list[tuple[str, int]]]:
    """Project functions by file: (qualified name, lines of its definition)."""
    by_file = defaultdict(list)
    for code in codes:
        path = Path(code.co_filename).resolve()
        if REPO not in path.parents or {".venv", "tests", "bench"} & set(path.relative_to(REPO).parts):
            continue
        if code.co_name.startswith("<"):  # comprehensions and lambdas: inside a counted function
            continue
        try:
            lines = len(inspect.getsourcelines(code)[0])
        except OSError:
            continue
        by_file[path.relative_to(REPO).as_posix()].append((code.co_qualname, lines))
    return dict(sorted(by_file.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--step", type=int, default=3, help="the step to trace, from 1 (default: %(default)s)")
    parser.add_argument("train_flags", nargs="*", help="more train.py flags, after --")
    options = parser.parse_args()
    tracer = StepTracer(options.step)
    original = dataloader._BaseDataLoaderIter.__next__
    dataloader._BaseDataLoaderIter.__next__ = tracer.wrap(original)
    with tempfile.TemporaryDirectory() as scratch:
        demo = Path(scratch) / "demo"
        generate_demo_data(demo, num_train=160, num_val=32)
        argv = ["--train_list", str(demo / "train.txt"), "--val_list", str(demo / "val.txt"),
                "--checkpoints_dir", str(Path(scratch) / "runs"), "--epochs", "1", "--batch_size", "16",
                "--num_workers", "0", "--limit_train_batches", str(options.step + 1), "--limit_val_batches", "1",
                "--print_freq", "1000", "--log_freq", "1000", *options.train_flags]
        code = train.main(argv)
    dataloader._BaseDataLoaderIter.__next__ = original
    if code != 0:
        sys.exit(f"train.py ended with exit code {code}")
    functions = own_functions(tracer.called)
    total = {"all": [0, 0, 0], "without model/": [0, 0, 0]}
    for path, entries in functions.items():
        lines = sum(n for _, n in entries)
        print(f"{path}: {lines} lines in {len(entries)} functions")
        for name, n in sorted(entries):
            print(f"    {n:4d}  {name}")
        for key in total:
            if key == "all" or not path.startswith("model/"):
                total[key] = [total[key][0] + lines, total[key][1] + 1, total[key][2] + len(entries)]
    for key, (lines, files, count) in total.items():
        print(f"one training step, {key}: {lines} lines in {files} files ({count} functions)")


if __name__ == "__main__":
    main()
