"""`python -m runs --group_by`: one row per group of runs (seeds, folds) with n and the mean ±
sample std of best, the last val/... values and the eval/... results; --csv, --where, --sort."""

import csv
import io
import json
import re
import statistics
from pathlib import Path

import pytest

from runs import listing as runs

# (lr, optimizer, seed) -> best val/acc; the last epoch's val/acc is 0.1 lower.
BEST = {(0.01, "sgd", 0): 0.50, (0.01, "sgd", 1): 0.60, (0.01, "sgd", 2): 0.70,
        (0.1, "sgd", 0): 0.80, (0.1, "sgd", 1): 0.90,
        (0.1, "adamw", 0): 0.95}


def write_run(root: Path, lr: float, optimizer: str, seed: int, best: float, status: str = "finished",
              evaluation: float | None = None) -> None:
    run = root / f"run_{lr}_{optimizer}_{seed}"
    run.mkdir(parents=True)
    (run / "args.json").write_text(json.dumps({"model_type": "base", "lr": lr, "optimizer": optimizer, "seed": seed,
                                               "monitor": None, "epochs": 2}))
    (run / "status.json").write_text(json.dumps({"status": status, "best": {"val/acc": best}, "best_epoch": 1}))
    (run / "metrics.csv").write_text(f"epoch,train/loss,val/acc\n1,1.0,{best}\n2,0.5,{best - 0.1}\n")
    if evaluation is not None:
        (run / "best" / "test_eval").mkdir(parents=True)
        (run / "best" / "test_eval" / "result.txt").write_text(f"acc: {evaluation}\nacc/circle: 1.0\n")


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    for (lr, optimizer, seed), best in BEST.items():
        evaluation = best - 0.05 if seed < 2 else None  # the third seed was not evaluated
        write_run(tmp_path, lr, optimizer, seed, best, evaluation=evaluation)
    return tmp_path


def text_rows(out: str) -> list[list[str]]:
    """The group table's rows, cells split on two or more spaces."""
    return [re.split(r"\s{2,}", line.strip()) for line in out.split("\n\n")[0].splitlines()]


def test_groups_show_n_and_mean_plus_minus_sample_std(sweep: Path, capsys) -> None:
    assert runs.main([str(sweep), "--group_by", "lr"]) == 0
    out = capsys.readouterr().out
    header, *rows = text_rows(out)
    assert header == ["lr", "n", "best", "val/acc", "eval/acc"]  # per-class eval values left out
    small = statistics.stdev([0.5, 0.6, 0.7])
    assert rows[0] == ["0.01", "3", f"0.6 ± {small:.2g}", f"0.5 ± {small:.2g}", "0.5 ± 0.071 (n=2)"]
    assert rows[1][:2] == ["0.1", "3"] and rows[1][2] == f"{statistics.fmean([0.8, 0.9, 0.95]):.4g} ± 0.076"
    assert "2 groups of 6 runs: mean ± sample std" in out and "best = best val/acc (max)" in out


def test_csv_has_separate_mean_std_and_n_columns(sweep: Path, capsys) -> None:
    assert runs.main([str(sweep), "--group_by", "lr", "--group_by", "optimizer", "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert list(rows[0])[:6] == ["lr", "optimizer", "n", "best_mean", "best_std", "best_n"]
    assert [(row["lr"], row["optimizer"], row["n"]) for row in rows] == [
        ("0.01", "sgd", "3"), ("0.1", "adamw", "1"), ("0.1", "sgd", "2")]
    assert float(rows[0]["best_mean"]) == pytest.approx(0.6) and float(rows[0]["best_std"]) == pytest.approx(0.1)
    assert rows[1]["best_std"] == "" and rows[1]["best_n"] == "1"  # one run: no std
    assert rows[0]["eval/acc_n"] == "2" and float(rows[2]["val/acc_std"]) == pytest.approx(statistics.stdev([.7, .8]))


def test_where_filters_runs_before_grouping_and_sort_orders_groups(sweep: Path, capsys) -> None:
    assert runs.main([str(sweep), "--group_by", "optimizer", "--where", "seed<=1", "--sort", "best", "--desc"]) == 0
    out = capsys.readouterr().out
    header, *rows = text_rows(out)
    assert [(row[0], row[1]) for row in rows] == [("adamw", "1"), ("sgd", "4")]
    assert "2 groups of 5 of 6 runs" in out
    assert runs.main([str(sweep), "--group_by", "optimizer", "--sort", "best_std"]) == 0
    assert [row[0] for row in text_rows(capsys.readouterr().out)[1:]] == ["sgd", "adamw"]  # no std last


def test_unfinished_runs_are_counted_and_named(sweep: Path, capsys) -> None:
    write_run(sweep, 0.01, "sgd", 3, 0.1, status="running")
    assert runs.main([str(sweep), "--group_by", "lr"]) == 0
    out = capsys.readouterr().out
    assert "1 not finished (add --where status=finished to leave them out)" in out
    assert runs.main([str(sweep), "--group_by", "lr", "--where", "status=finished"]) == 0
    assert "not finished" not in capsys.readouterr().out


@pytest.mark.parametrize(("flags", "message"), [
    (["--group_by", "learning_rate"], "--group_by 'learning_rate': no run has that column; columns: "),
    (["--group_by", "lr", "--sort", "started"], "--sort 'started': with --group_by, sort by a group column: lr, n,"),
])
def test_unknown_group_and_sort_columns_are_one_line_errors(sweep: Path, flags: list[str], message: str,
                                                            capsys) -> None:
    assert runs.main([str(sweep), *flags]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"error: {message}") and err.count("\n") == 1
