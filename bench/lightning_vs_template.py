"""Benchmark: the template's epoch against PyTorch Lightning's and a plain loop's, same workload.

    python bench/lightning_vs_template.py --python /tmp/lightenv/bin/python \\
        --train_list /tmp/digits/train.txt --val_list /tmp/digits/val.txt [--rounds 5]

Lightning is NOT a dependency of the template: install it, with the same torch and
torchvision as the project's environment (a fair comparison needs the same kernels), into a
throw-away virtual environment and name its interpreter with --python:

    python3 -m venv /tmp/lightenv
    /tmp/lightenv/bin/pip install torch==<yours> torchvision==<yours> lightning tensorboard tqdm prefetch_generator

That interpreter runs all three sides (train.py needs nothing Lightning lacks), so each side
uses the same torch. The data: a `<image path> <label>` list, e.g. scikit-learn's digits
exported by bench/digits_data.py (1,437 training and 360 validation pictures, 32 x 32).

The workload, the same on every side: torchvision's resnet18 (no weights, 10 classes), each
picture decoded from its file by a Dataset in a DataLoader (batch 64, 2 workers, the last
incomplete training batch dropped), no augmentation (resize and normalise), AdamW (lr 3e-3,
weight decay 1e-4) with a cosine schedule stepped every batch, validation and a checkpoint
(weights and optimizer) every epoch.

  template    python train.py --model_type resnet18 --train_list ... --val_list ... (defaults, but
              --no-in_memory: pictures read from disk every epoch, as the other sides read them)
  lightning   a LightningModule and Trainer.fit: the default logger (TensorBoard), the default
              checkpointing (ModelCheckpoint: every epoch) and progress bar, the 2 sanity-check
              validation batches; its loaders use persistent workers, as Lightning advises
  plain       a pytorch/examples mnist-style loop: train() and test() functions, torch.save
              of model and optimizer every epoch, workers restarted every epoch (no
              persistent workers), a log line every 10 batches

All three keep freed memory for reuse (utils/host_memory.py: train.py does; the other two
sides call it here). Each is timed as a whole process (start-up included) for 1 and for 4 epochs; the marginal
epoch is (T(4) - T(1)) / 3, which leaves start-up and the first epoch's warm-up out. Two
clocks: wall seconds (what the issue asks about; only meaningful on a quiet machine) and CPU
seconds of the process and its DataLoader workers (the work done: on a shared machine it
moves far less than the wall time, and on a quiet 2-core machine the wall time is about
half of it when both cores are busy). Runs
are interleaved: every round runs each side once for each epoch count, in an order that
rotates from round to round, so drift on a shared machine hits all sides alike. The table
gives the median over the rounds (min - max beside it) and each side's median ratio to
Lightning, taken round by round. `--template NAME=DIR` adds another checkout of the
template (e.g. an older commit, as a git worktree) as a side of its own.
"""

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the template's utils/, from anywhere
from utils.host_memory import keep_freed_memory  # noqa: E402

BATCH_SIZE, NUM_WORKERS, LR, WEIGHT_DECAY, NUM_CLASSES = 64, 2, 3e-3, 1e-4, 10


# --- the sides that are not the template (run in their own process by `side`) ---------------

def list_dataset(list_path: str):
    """`<image path> <label>` lines, each picture decoded when its item is read: what a user
    writes for a list in a Lightning or a plain project."""
    import torch
    from PIL import Image
    from torchvision import transforms

    class ListFile(torch.utils.data.Dataset):
        def __init__(self, path: str) -> None:
            folder = Path(path).parent
            rows = [line.rsplit(maxsplit=1) for line in Path(path).read_text().splitlines() if line.strip()]
            self.samples = [(folder / image, int(label)) for image, label in rows]
            self.transform = transforms.Compose([transforms.Resize((32, 32)), transforms.ToTensor(),
                                                 transforms.Normalize((0.5,), (0.5,))])

        def __len__(self) -> int:
            return len(self.samples)

        def __getitem__(self, index: int):
            path, label = self.samples[index]
            return self.transform(Image.open(path).convert("RGB")), label

    return ListFile(list_path)


def loaders(args: argparse.Namespace, persistent: bool):
    import torch
    common = dict(batch_size=BATCH_SIZE, num_workers=NUM_WORKERS, persistent_workers=persistent)
    train = torch.utils.data.DataLoader(list_dataset(args.train_list), shuffle=True, drop_last=True, **common)
    val = torch.utils.data.DataLoader(list_dataset(args.val_list), shuffle=False, **common)
    return train, val


def optimizer_and_schedule(model, steps: int):
    import torch
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)


def run_lightning(args: argparse.Namespace) -> None:
    import lightning as L
    import torch
    import torch.nn.functional as F
    import torchvision

    class Classifier(L.LightningModule):
        def __init__(self, steps: int) -> None:
            super().__init__()
            self.model = torchvision.models.resnet18(weights=None, num_classes=NUM_CLASSES)
            self.steps = steps

        def training_step(self, batch, batch_idx):
            image, label = batch
            loss = F.cross_entropy(self.model(image), label)
            self.log("train_loss", loss, prog_bar=True)
            return loss

        def validation_step(self, batch, batch_idx):
            image, label = batch
            pred = self.model(image)
            self.log("val_loss", F.cross_entropy(pred, label))
            self.log("val_acc", (pred.argmax(1) == label).float().mean())

        def configure_optimizers(self):
            optimizer, schedule = optimizer_and_schedule(self.model, self.steps)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    torch.manual_seed(42)
    train, val = loaders(args, persistent=True)
    trainer = L.Trainer(max_epochs=args.epochs, accelerator="cpu", devices=1, default_root_dir=args.out)
    trainer.fit(Classifier(args.epochs * len(train)), train, val)


def run_plain(args: argparse.Namespace) -> None:
    import torch
    import torch.nn.functional as F
    import torchvision

    def train(model, loader, optimizer, schedule, epoch):
        model.train()
        for batch_idx, (data, target) in enumerate(loader):
            optimizer.zero_grad()
            loss = F.cross_entropy(model(data), target)
            loss.backward()
            optimizer.step()
            schedule.step()
            if batch_idx % 10 == 0:
                print(f"Train Epoch: {epoch} [{batch_idx * len(data)}/{len(loader.dataset)}]\tLoss: {loss.item():.6f}")

    def test(model, loader):
        model.eval()
        test_loss, correct = 0.0, 0
        with torch.no_grad():
            for data, target in loader:
                output = model(data)
                test_loss += F.cross_entropy(output, target, reduction="sum").item()
                correct += output.argmax(dim=1).eq(target).sum().item()
        print(f"Test set: Average loss: {test_loss / len(loader.dataset):.4f}, "
              f"Accuracy: {correct}/{len(loader.dataset)}")

    torch.manual_seed(42)
    train_loader, val_loader = loaders(args, persistent=False)
    model = torchvision.models.resnet18(weights=None, num_classes=NUM_CLASSES)
    optimizer, schedule = optimizer_and_schedule(model, args.epochs * len(train_loader))
    for epoch in range(1, args.epochs + 1):
        train(model, train_loader, optimizer, schedule, epoch)
        test(model, val_loader)
        torch.save({"epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict()},
                   Path(args.out) / "checkpoint.pt")


# --- the driver ---------------------------------------------------------------------------

def side_command(side: str, template_dir: Path | None, epochs: int, out: Path, args: argparse.Namespace) -> list[str]:
    if template_dir is not None:
        # From disk, as the other two sides read (small lists are otherwise held in memory).
        return [args.python, str(template_dir / "train.py"), "--model_type", "resnet18", "--train_list",
                args.train_list, "--val_list", args.val_list, "--epochs", str(epochs), "--checkpoints_dir", str(out),
                "--no-in_memory"]
    return [args.python, str(Path(__file__).resolve()), "side", side, "--epochs", str(epochs), "--out", str(out),
            "--train_list", args.train_list, "--val_list", args.val_list]


def timed_run(command: list[str], cwd: Path, out: Path) -> tuple[float, float]:
    """(wall seconds from start to exit, CPU seconds) of one whole process. The CPU seconds
    are user + system of the process and every process it waited for (its DataLoader
    workers): the work done, which other work on a shared machine moves far less than the
    wall time. Its output is kept in out.parent."""
    out.mkdir(parents=True)
    with open(out.parent / "log.txt", "ab") as log:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
        seconds = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed (exit {done.returncode}); see {out.parent / 'log.txt'}")
    shutil.rmtree(out)  # checkpoints are large: one run's at a time
    return seconds, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def compare(args: argparse.Namespace) -> None:
    sides: dict[str, Path | None] = {"template": ROOT}
    for spec in args.template:
        name, _, folder = spec.partition("=")
        sides[f"template {name}"] = Path(folder).resolve()
    sides |= {"lightning": None, "plain": None}
    sides = {name: folder for name, folder in sides.items() if name not in args.skip}
    times = {name: {1: [], 4: []} for name in sides}  # (wall, CPU) seconds of each run
    scratch = Path(tempfile.mkdtemp(prefix="lightning_vs_template-"))
    print(f"{args.rounds} rounds; python {args.python}; data {args.train_list}; outputs in {scratch}/log.txt")
    started = time.perf_counter()
    try:
        for round_index in range(args.rounds + args.warmup):
            names = list(sides)
            shift = round_index % len(names)
            for name in names[shift:] + names[:shift]:
                for epochs in ((1, 4) if round_index % 2 else (4, 1)):
                    cwd = sides[name] or ROOT
                    seconds = timed_run(side_command(name, sides[name], epochs, scratch / "out", args), cwd,
                                        scratch / "out")
                    if round_index >= args.warmup:
                        times[name][epochs].append(seconds)
            if round_index >= args.warmup:
                print(f"round {round_index - args.warmup + 1}, marginal epoch wall / CPU: " + "  ".join(
                    f"{n} {(t[4][-1][0] - t[1][-1][0]) / 3:.2f} / {(t[4][-1][1] - t[1][-1][1]) / 3:.2f} s "
                    f"(T1 {t[1][-1][0]:.1f} / {t[1][-1][1]:.1f}, T4 {t[4][-1][0]:.1f} / {t[4][-1][1]:.1f})"
                    for n, t in times.items()), flush=True)
            elapsed = time.perf_counter() - started
            if args.max_seconds and elapsed / (round_index + 1) * (round_index + 2) > args.max_seconds:
                print(f"stopping after round {round_index + 1}: another would pass --max_seconds")
                break
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    report(times)


def report(times: dict[str, dict[int, list[tuple[float, float]]]]) -> None:
    rounds = len(times["lightning"][1])
    print(f"\nmarginal epoch = (T(4 epochs) - T(1 epoch)) / 3, whole processes, median of {rounds} rounds "
          "(min - max); ratio to Lightning: the median of the rounds' ratios")
    for kind, what in ((0, "wall seconds"), (1, "CPU seconds (user + system, workers included)")):
        marginal = {name: [(four[kind] - one[kind]) / 3 for one, four in zip(t[1], t[4])]
                    for name, t in times.items()}
        reference = marginal["lightning"]
        print(f"\n{what}\n| {'side':20s} | marginal epoch | T(1 epoch) | ratio to Lightning |")
        print(f"| {'---':20s} | --- | --- | --- |")
        for name, values in marginal.items():
            ratio = statistics.median(v / r for v, r in zip(values, reference))
            first = statistics.median(one[kind] for one in times[name][1])
            print(f"| {name:20s} | {statistics.median(values):.2f} s ({min(values):.2f} - {max(values):.2f}) | "
                  f"{first:.2f} s | {ratio:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command")
    side = commands.add_parser("side", help="run one side once (the driver calls this)")
    side.add_argument("name", choices=["lightning", "plain"])
    side.add_argument("--epochs", type=int, required=True)
    side.add_argument("--out", required=True)
    for each in (parser, side):
        each.add_argument("--train_list", default="/tmp/digits/train.txt", help="training list (default: %(default)s)")
        each.add_argument("--val_list", default="/tmp/digits/val.txt", help="validation list (default: %(default)s)")
    parser.add_argument("--python", default=sys.executable,
                        help="the interpreter that runs every side; Lightning must be installed in it "
                             "(default: this one)")
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=1, help="rounds run first and not counted (default: %(default)s)")
    parser.add_argument("--template", action="append", default=[], metavar="NAME=DIR",
                        help="another checkout of the template to time as a side of its own")
    parser.add_argument("--max_seconds", type=float, default=0,
                        help="start no round that would end after this many seconds (default: no limit)")
    parser.add_argument("--skip", action="append", default=[], choices=["template", "plain"],
                        help="leave a side out (Lightning is the yardstick and always runs)")
    parser.add_argument("--keep", action="store_true", help="keep the outputs and log.txt")
    args = parser.parse_args()
    if args.command == "side":
        keep_freed_memory()  # as train.py does: no side is favoured by the allocator
        {"lightning": run_lightning, "plain": run_plain}[args.name](args)
        return
    for path in (args.train_list, args.val_list):
        if not Path(path).is_file():
            raise SystemExit(f"{path} does not exist: export a list first (see this script's docstring).")
    check = subprocess.run([args.python, "-c", "import lightning"], capture_output=True)
    if check.returncode != 0:
        raise SystemExit(f"{args.python} cannot import lightning; make a throw-away environment for it "
                         "(see this script's docstring) and pass its interpreter with --python.")
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    args.train_list, args.val_list = str(Path(args.train_list).resolve()), str(Path(args.val_list).resolve())
    compare(args)  # (the lists by absolute path: the sides run in their own folders)


if __name__ == "__main__":
    main()
