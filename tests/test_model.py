"""model/: the registry, the models' typed signatures and their output shapes."""

import inspect

import pytest
import torch

from model.model_entry import MODELS, equip_multi_gpu, select_model
from options import parse_train_args
from utils.errors import UserError


def build(name: str, num_classes: int, in_channels: int, *flags: str) -> torch.nn.Module:
    """The model as train.py builds it: its own flags' defaults (or `flags`) and the data's sizes."""
    args, _ = parse_train_args(["--model_type", name, *flags])
    own = {p: getattr(args, p) for p in inspect.signature(MODELS[name]).parameters if hasattr(args, p)}
    return select_model(args, {"num_classes": num_classes, "in_channels": in_channels, **own})

SEGMENTATION_MODELS = ["unet"]


@pytest.mark.parametrize("name", [name for name in MODELS if name not in SEGMENTATION_MODELS])
@pytest.mark.parametrize("in_channels, size", [(3, 32), (1, 28)])
def test_every_classification_model_gives_one_score_per_class(name: str, in_channels: int, size: int) -> None:
    model = build(name, 7, in_channels)
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(2, in_channels, size, size)).shape == (2, 7)


@pytest.mark.parametrize("name", SEGMENTATION_MODELS)
@pytest.mark.parametrize("in_channels, height, width", [(3, 32, 32), (1, 27, 45)])  # odd sizes too
def test_every_segmentation_model_scores_every_pixel(name: str, in_channels: int, height: int, width: int) -> None:
    model = build(name, 6, in_channels)
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(2, in_channels, height, width)).shape == (2, 6, height, width)


@pytest.mark.parametrize("up", ["bilinear", "transposed"])
def test_the_unet_upsamples_either_way_to_any_size(up: str) -> None:
    model = build("unet", 6, 3, "--up", up)
    model.eval()
    with torch.no_grad():
        for height, width in [(32, 32), (27, 45), (17, 9)]:
            assert model(torch.randn(2, 3, height, width)).shape == (2, 6, height, width)
    learned = [name for name in model.state_dict() if "upsample" in name]
    assert bool(learned) == (up == "transposed")  # bilinear: the tensors of checkpoints made before --up


@pytest.mark.parametrize("name", list(MODELS))
def test_models_take_typed_keywords_never_args(name: str) -> None:
    parameters = inspect.signature(MODELS[name]).parameters
    assert "args" not in parameters
    assert {"num_classes", "in_channels"} <= set(parameters)
    assert all(p.annotation is not inspect.Parameter.empty for p in parameters.values())


def test_a_models_own_flag_reaches_its_constructor() -> None:
    assert build("unet", 6, 3, "--width", "8").head.in_channels == 8
    assert build("base", 5, 3, "--width", "4").classifier.in_features == 16


def test_a_value_the_constructor_rejects_is_one_message_naming_it() -> None:
    message = "--model_type base cannot be built with num_classes=5, in_channels=3, width=-2"
    with pytest.raises(UserError, match=message):
        build("base", 5, 3, "--width", "-2")


def test_equip_multi_gpu_leaves_a_single_device_model_alone() -> None:
    model = torch.nn.Linear(2, 2)
    assert equip_multi_gpu(model, None) is model
    assert equip_multi_gpu(model, [0]) is model
    wrapped = equip_multi_gpu(model, [0, 1])
    assert isinstance(wrapped, torch.nn.DataParallel) and wrapped.module is model
