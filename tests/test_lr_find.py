"""The learning-rate finder: its arithmetic on curves whose answer is known (tools/lr_curve.py),
the chart, bad flags (exit 2, nothing written), and a range test on the tiny demo set that
writes its own folder and changes no run."""

import csv
import json
import math
import random
from pathlib import Path

import pytest
from helpers import tiny_train_argv
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tools import lr_curve, lr_find
from tools.curve_png import HEIGHT, WIDTH, log_chart
from utils.run_search import find_run_dirs


def test_rates_run_from_start_to_end_evenly_in_log_scale() -> None:
    lrs = lr_curve.rates(1e-6, 1.0, 7)
    assert lrs[0] == pytest.approx(1e-6) and lrs[-1] == pytest.approx(1.0)
    assert [math.log10(lr) for lr in lrs] == pytest.approx([-6, -5, -4, -3, -2, -1, 0])


def test_the_smoothed_loss_is_bias_corrected() -> None:
    assert lr_curve.smoothed([2.0] * 5, 0.98) == pytest.approx([2.0] * 5)  # not pulled towards 0 at the start
    assert lr_curve.smoothed([1.0, 3.0], 0.5) == pytest.approx([1.0, (0.5 * 0.5 + 0.5 * 3.0) / 0.75])


def test_divergence_is_the_smoothed_loss_above_the_factor_times_its_lowest() -> None:
    assert not lr_curve.diverged([2.0, 1.0, 3.9], 4.0)
    assert lr_curve.diverged([2.0, 1.0, 4.1], 4.0)
    assert lr_curve.diverged([2.0, math.nan], 4.0)


def falling_curve(centre: float, noise: float, steps: int = 200) -> tuple[list[float], list[float]]:
    """A loss that falls fastest at lr = 10 ** centre, then rises: 2 - tanh(log10 lr - centre)
    up to 10 ** (centre + 1.5), then up steeply; with noise."""
    lrs = lr_curve.rates(1e-7, 10.0, steps)
    rand = random.Random(0)
    losses = []
    for lr in lrs:
        x = math.log10(lr) - centre
        losses.append(2 - math.tanh(x) + max(0.0, x - 1.5) ** 2 + rand.gauss(0, noise))
    return lrs, losses


@pytest.mark.parametrize("centre", [-4.0, -3.0, -2.0])
def test_the_suggestion_is_the_steepest_fall_even_on_a_noisy_loss(centre: float) -> None:
    lrs, losses = falling_curve(centre, noise=0.05)
    index, lowest = lr_curve.suggestion(lrs, losses, beta=0.9, skip_start=10)
    assert abs(math.log10(lrs[index]) - centre) < 0.3
    assert lrs[lowest] > lrs[index]  # the steepest fall comes before the lowest loss


def test_the_lagging_average_would_have_moved_the_suggestion_to_larger_rates() -> None:
    """Why the suggestion is read from the curve smoothed forwards and backwards."""
    lrs, losses = falling_curve(-3.0, noise=0.0)
    lagging = lr_curve.smoothed(losses, 0.98)
    slopes = [lagging[i + 1] - lagging[i] for i in range(10, len(lagging) - 1)]
    lagging_steepest = 10 + slopes.index(min(slopes))
    index, _ = lr_curve.suggestion(lrs, losses, beta=0.98, skip_start=10)
    assert abs(math.log10(lrs[index]) + 3.0) < 0.3
    assert math.log10(lrs[lagging_steepest]) > -3.0 + 0.5  # half a decade and more too high


def test_no_suggestion_when_the_loss_only_fell_in_the_burn_in() -> None:
    lrs = lr_curve.rates(1e-3, 10.0, 20)
    losses = [3.0 - i for i in range(3)] + [1.0 + i for i in range(17)]  # lowest at step 3
    assert lr_curve.suggestion(lrs, losses, beta=0.0, skip_start=5) is None


def test_the_chart_is_a_png_with_the_suggestion_marked(tmp_path: Path) -> None:
    lrs, losses = falling_curve(-3.0, noise=0.05, steps=50)
    log_chart(tmp_path / "chart.png", lrs, [(losses, "#b8b8b8", "loss")], "title", "lr", "loss",
              marker=(1e-3, "suggested 1e-3"))
    with Image.open(tmp_path / "chart.png") as image:
        assert image.format == "PNG" and image.size == (WIDTH, HEIGHT)
        red = [x for x in range(WIDTH) if image.getpixel((x, HEIGHT // 2)) == (255, 0, 0)]
    assert red, "no marker line"
    left, right = 80, WIDTH - 30  # the plot area: 1e-7 to 1e1, 8 decades
    assert abs(red[0] - (left + (right - left) * 4 / 8)) <= 3  # at 1e-3


@pytest.mark.parametrize("argv, message", [
    (["--start_lr", "1", "--end_lr", "0.1"], "--end_lr 0.1 must be larger than --start_lr 1.0"),
    (["--num_steps", "10", "--skip_start", "8"], "--skip_start 8 leaves fewer than 3 of --num_steps 10"),
    (["--smooth", "1"], "--smooth 1.0 must be in [0, 1)"),
    (["--resume", "checkpoints/x"], "--resume: the finder starts from what the flags build"),
    (["--lr_typo", "1"], "unrecognized arguments: --lr_typo"),
])
def test_bad_flags_are_one_message_and_write_nothing(argv, message, tiny_demo, tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        lr_find.main(tiny_train_argv(tiny_demo, tmp_path / "checkpoints") + argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "checkpoints").exists()


def test_a_model_that_does_not_fit_the_data_is_refused_before_any_folder(tiny_demo, tmp_path) -> None:
    argv = tiny_train_argv(tiny_demo, tmp_path / "checkpoints") + ["--model_type", "unet"]  # a segmentation model
    assert lr_find.main(argv) == 2
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.slow
def test_a_range_test_writes_its_own_folder_and_no_run(tiny_demo: Path, tmp_path: Path) -> None:
    checkpoints = tmp_path / "checkpoints"
    argv = tiny_train_argv(tiny_demo, checkpoints) + ["--num_steps", "30", "--skip_start", "3", "--end_lr", "100"]
    assert lr_find.main(argv) == 0
    (folder,) = (checkpoints / "lr_find").iterdir()
    assert {"lr_find.png", "lr_find.csv", "lr_find.json", "log.txt", "command.sh", "run_info.json"} <= {
        p.name for p in folder.iterdir()}
    assert list(find_run_dirs(checkpoints)) == []  # not taken for a run by eval.py or `python -m runs`
    result = json.loads((folder / "lr_find.json").read_text())
    rows = list(csv.DictReader(open(folder / "lr_find.csv")))
    assert len(rows) == result["steps_run"] <= 30
    assert [float(r["lr"]) for r in rows] == pytest.approx(lr_curve.rates(1e-7, 100, 30)[:len(rows)])
    losses = [float(r["loss"]) for r in rows]
    assert [float(r["smoothed_loss"]) for r in rows] == pytest.approx(lr_curve.smoothed(losses, 0.9))
    if result["suggested_lr"] is not None:
        assert float(rows[result["suggested_step"] - 1]["lr"]) == pytest.approx(result["suggested_lr"])
        assert "steepest fall" in result["how_chosen"] and "burn-in of 3 steps" in result["how_chosen"]
    assert result["train_args"]["train_list"] == str(tiny_demo / "train.txt")
    events = EventAccumulator(str(folder))
    events.Reload()
    assert {"lr_find/loss", "lr_find/smoothed_loss", "lr_find/lr"} <= set(events.Tags()["scalars"])
    assert "lr_find/chart" in events.Tags()["images"]


def test_the_burn_in_is_a_tenth_of_the_steps_unless_given(tiny_demo: Path, tmp_path: Path) -> None:
    own, train_args = lr_find.parse_args(tiny_train_argv(tiny_demo, tmp_path) + ["--num_steps", "50", "--lr", "0.5"])
    assert (own.num_steps, own.skip_start, train_args.lr) == (50, 5, 0.5)  # the rest are train.py's flags
    assert lr_find.parse_args(tiny_train_argv(tiny_demo, tmp_path) + ["--skip_start", "0"])[0].skip_start == 0
