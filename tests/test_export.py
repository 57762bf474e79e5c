"""tools/export.py: each format loaded back independently agrees with the model on real
pictures, export.json says the input and preprocessing, bad input is exit 2 with nothing
written, and ONNX where the optional package is installed."""

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import torch

from data.augment import MEAN, eval_transform
from data.list_dataset import load_image, read_list_file
from model.base import BaseNet
from tools import export

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run_dir(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(shutil.copytree(trained_run, tmp_path_factory.mktemp("export") / trained_run.name))


@pytest.fixture(scope="module")
def exported(run_dir: Path) -> Path:
    assert export.main([str(run_dir), "--formats", "torch_export", "torchscript", "--samples", "6"]) == 0
    return run_dir / "best" / "export"


def pictures(demo: Path, count: int) -> torch.Tensor:
    entries = read_list_file(demo / "val.txt")[:count]
    return torch.stack([eval_transform(32)(load_image(e.image, e.where)) for e in entries])


def eager(run_dir: Path) -> BaseNet:
    model = BaseNet(num_classes=5, in_channels=3)
    model.load_state_dict(torch.load(run_dir / "best.pth")["model"])
    return model.eval()


def test_each_file_loaded_back_gives_the_models_scores(exported: Path, run_dir: Path, tiny_demo: Path) -> None:
    x = pictures(tiny_demo, 11)  # another batch size than exported with: the batch is free
    with torch.no_grad():
        expected = eager(run_dir)(x)
        from_export = torch.export.load(str(exported / "model.pt2")).module()(x)
        from_script = torch.jit.load(str(exported / "model.torchscript.pt"))(x)
    assert (from_export - expected).abs().max() < 1e-5
    assert (from_script - expected).abs().max() < 1e-5


def test_export_json_says_input_preprocessing_outputs_and_parity(exported: Path, run_dir: Path) -> None:
    record = json.loads((exported / "export.json").read_text())
    assert record["input"]["shape"] == ["batch", 3, 32, 32]
    assert record["preprocessing"]["resize"] == [32, 32] and record["preprocessing"]["mean"] == [MEAN[0]] * 3
    assert record["output"]["class_names"] == torch.load(run_dir / "best.pth")["class_names"]
    assert record["parity"]["samples"] == 6
    for name in ("torch_export", "torchscript"):
        assert record["formats"][name]["ok"] is True and record["formats"][name]["max_abs_diff"] <= 1e-4
    records = {"args.json", "command.sh", "run_info.json", "status.json", "log.txt"}
    assert records <= {p.name for p in exported.iterdir()}


def test_a_second_export_goes_to_a_new_folder(exported: Path, run_dir: Path) -> None:
    before = (exported / "export.json").read_bytes()
    assert export.main([str(run_dir / "best.pth"), "--formats", "torch_export"]) == 0
    assert (run_dir / "best" / "export_1" / "model.pt2").is_file()
    assert (exported / "export.json").read_bytes() == before


def test_a_format_off_by_more_than_atol_fails_the_command(run_dir: Path, tmp_path: Path, monkeypatch) -> None:
    real = export.EXPORTERS["torch_export"]

    def off_by_one(model, samples, folder):
        path, run = real(model, samples, folder)
        return path, lambda x: run(x) + 1.0

    monkeypatch.setitem(export.EXPORTERS, "torch_export", off_by_one)
    assert export.main([str(run_dir), "--formats", "torch_export", "--output_dir", str(tmp_path)]) == 1
    record = json.loads((tmp_path / "export" / "export.json").read_text())
    assert record["formats"]["torch_export"]["ok"] is False
    assert record["formats"]["torch_export"]["max_abs_diff"] == pytest.approx(1.0)


@pytest.mark.skipif(importlib.util.find_spec("onnx") is None, reason="the optional onnx package is not installed")
def test_onnx_where_the_package_is_installed(run_dir: Path, tmp_path: Path) -> None:
    assert export.main([str(run_dir), "--formats", "onnx", "--output_dir", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "export" / "export.json").read_text())
    assert record["formats"]["onnx"]["file"] == "model.onnx"
    assert record["formats"]["onnx"]["ok"] in (True, None)  # None: onnxruntime is not installed to check it


def exit_code(argv: list[str]) -> int:
    try:
        return export.main(argv)
    except SystemExit as stop:
        return stop.code


@pytest.mark.skipif(importlib.util.find_spec("onnx") is not None, reason="onnx is installed here")
def test_onnx_without_the_package_is_a_clear_error(run_dir: Path, tmp_path: Path, capsys) -> None:
    assert exit_code([str(run_dir), "--formats", "onnx", "--output_dir", str(tmp_path / "out")]) == 2
    assert "pip install onnx" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_bad_input_is_exit_2_and_writes_nothing(run_dir: Path, tmp_path: Path, capsys) -> None:
    plain = tmp_path / "weights.pth"
    torch.save(torch.load(run_dir / "best.pth")["model"], plain)  # a bare state dict: no model or task named
    (tmp_path / "text.pth").write_text("not a checkpoint")
    cases = [([str(plain)], "does not say which model, task and flags it holds"),
             ([str(tmp_path / "text.pth")], "is not a loadable PyTorch checkpoint"),
             ([str(tmp_path / "missing")], "does not exist"),
             ([str(run_dir), "--val_list", str(tmp_path / "no.txt"), "--output_dir", str(tmp_path / "o")], "no.txt"),
             ([str(run_dir), "--samples", "0"], "--samples 0 must be 1 or more")]
    for argv, message in cases:
        assert exit_code(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
    assert not (tmp_path / "weights").exists() and not (tmp_path / "o").exists()
