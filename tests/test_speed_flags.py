"""The speed features on the CPU: AMP, channels_last, gradient accumulation, clipping and
per-step curves do what they say (their speed is measured by bench/, not here)."""

from pathlib import Path

import pytest
import torch
from helpers import REPO, run_python, start_training, tiny_train_argv
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

import train
from utils.host_memory import USER_SETTINGS, is_glibc


def trained(argv: list[str]) -> train.Trainer:
    trainer, run = start_training(argv)
    trainer.train(run)
    run.close()
    return trainer


def a_batch(trainer: train.Trainer) -> dict:
    return train.forward(trainer.model, next(iter(trainer.val_loader)), trainer.loss_fn, trainer.args.amp,
                         trainer.args.channels_last)


@pytest.mark.slow
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_trains_and_saves_its_loss_scaler(amp: str, tiny_demo: Path, tmp_path: Path) -> None:
    trainer = trained(tiny_train_argv(tiny_demo, tmp_path) + ["--amp", amp])
    checkpoint = torch.load(trainer.run.path / "last.pth")
    assert torch.isfinite(torch.tensor(checkpoint["metrics"]["train/loss"]))
    assert trainer.scaler.is_enabled() == (amp == "fp16") and "scaler" in checkpoint
    out = a_batch(trainer)
    assert out["pred"].dtype == {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]  # autocast was on


@pytest.mark.slow
def test_channels_last_lays_out_weights_and_images_as_nhwc(tiny_demo: Path, tmp_path: Path) -> None:
    trainer = trained(tiny_train_argv(tiny_demo, tmp_path) + ["--channels_last"])
    conv = trainer.model.features[0][0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    image = a_batch(trainer)["image"]
    assert image.is_contiguous(memory_format=torch.channels_last)


def linear_model(args, kwargs: dict) -> nn.Module:
    """No batch norm: its statistics depend on the batch size, which this test changes."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(kwargs["in_channels"] * 32 * 32, kwargs["num_classes"]))


@pytest.mark.slow
def test_two_accumulated_half_batches_equal_one_full_batch(tiny_demo, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(train, "select_model", linear_model)
    weights = []
    for batch_size, accum in ((12, 1), (6, 2)):  # 60 samples: 5 steps of 12, or 5 x 2 batches of 6
        argv = tiny_train_argv(tiny_demo, tmp_path / str(accum), epochs=2)
        argv[argv.index("--batch_size") + 1] = str(batch_size)
        trainer = trained(argv + ["--accum_steps", str(accum), "--optimizer", "sgd", "--lr", "0.05"])
        weights.append(trainer.model[1].weight.detach().clone())
    assert torch.allclose(weights[0], weights[1], atol=1e-6)
    untrained = linear_model(None, {"num_classes": 5, "in_channels": 3})[1].weight
    assert not torch.equal(weights[0], untrained)  # and it did train


def test_gradient_clipping_bounds_each_step(tiny_demo, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(train, "select_model", linear_model)
    before = linear_model(None, {"num_classes": 5, "in_channels": 3})[1].weight.detach().clone()
    argv = tiny_train_argv(tiny_demo, tmp_path) + ["--optimizer", "sgd", "--momentum", "0", "--lr", "1",
                                                   "--weight_decay", "0", "--clip_grad", "0.001"]
    trainer = trained(argv)
    moved = (trainer.model[1].weight - before).norm().item()
    assert 0 < moved <= 3 * 0.001 + 1e-6  # 3 steps of lr 1 x a gradient of norm at most 0.001


@pytest.mark.slow
def test_per_step_curves_every_log_freq_steps(tiny_demo: Path, tmp_path: Path) -> None:
    trainer = trained(tiny_train_argv(tiny_demo, tmp_path, epochs=2) + ["--log_freq", "2"])
    events = EventAccumulator(str(trainer.run.path))
    events.Reload()
    # 3 full batches an epoch (60 samples, 16 a batch, the rest dropped); batches 0 and 2 of
    # each epoch are logged, after global steps 1, 3 and 4, 6.
    assert [e.step for e in events.Scalars("train_step/loss")] == [1, 3, 4, 6]
    assert [e.step for e in events.Scalars("train_step/lr")] == [1, 3, 4, 6]


FAULTS_PER_STEPS = """
import resource, sys
import torch
from model.unet import UNet
from utils.host_memory import keep_freed_memory
print(keep_freed_memory() if sys.argv[1] == "kept" else False)
torch.set_num_threads(1)
model, image, mask = UNet(4, width=8), torch.randn(16, 3, 32, 32), torch.zeros(16, 32, 32, dtype=torch.long)
for step in range(13):
    if step == 3:  # warmed up
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.nn.functional.cross_entropy(model(image), mask).backward()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults)
"""


@pytest.mark.slow
@pytest.mark.skipif(not is_glibc(), reason="glibc's malloc only")
def test_training_steps_reuse_freed_memory_instead_of_faulting_it_in_again() -> None:
    """utils/host_memory.py: with glibc's defaults every step maps its activations afresh
    (thousands of page faults a step); kept, the same steps take next to none."""
    counts = {}
    for mode in ("default", "kept"):
        done = run_python(["-c", FAULTS_PER_STEPS, mode], env={"PYTHONPATH": str(REPO)})
        assert done.returncode == 0, done.stderr
        applied, faults = done.stdout.split()
        assert applied == str(mode == "kept")
        counts[mode] = int(faults)
    assert counts["default"] > 5_000 and counts["kept"] < counts["default"] / 20, counts
    check = "from utils.host_memory import keep_freed_memory; print(keep_freed_memory())"
    assert run_python(["-c", check], env={"PYTHONPATH": str(REPO)}).stdout.strip() == "True"
    for name, value in zip(USER_SETTINGS, ("65536", "65536", "glibc.malloc.trim_threshold=0", "libjemalloc.so.2")):
        done = run_python(["-c", check], env={"PYTHONPATH": str(REPO), name: value})
        assert done.stdout.strip() == "False", (name, done.stderr)  # the user's own settings or allocator win
