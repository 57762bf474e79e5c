"""model/: the registry, the models' typed signatures and their output shapes."""

import inspect
from argparse import Namespace

import pytest
import torch

from model.model_entry import MODELS, equip_multi_gpu, select_model
from utils.errors import UserError

SEGMENTATION_MODELS = ["unet"]


@pytest.mark.parametrize("name", [name for name in MODELS if name not in SEGMENTATION_MODELS])
@pytest.mark.parametrize("in_channels, size", [(3, 32), (1, 28)])
def test_every_classification_model_gives_one_score_per_class(name: str, in_channels: int, size: int) -> None:
    model = select_model(Namespace(model_type=name), num_classes=7, in_channels=in_channels)
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(2, in_channels, size, size)).shape == (2, 7)


@pytest.mark.parametrize("name", SEGMENTATION_MODELS)
@pytest.mark.parametrize("in_channels, height, width", [(3, 32, 32), (1, 27, 45)])  # odd sizes too
def test_every_segmentation_model_scores_every_pixel(name: str, in_channels: int, height: int, width: int) -> None:
    model = select_model(Namespace(model_type=name), num_classes=6, in_channels=in_channels)
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(2, in_channels, height, width)).shape == (2, 6, height, width)


@pytest.mark.parametrize("name", list(MODELS))
def test_models_take_typed_keywords_never_args(name: str) -> None:
    parameters = inspect.signature(MODELS[name]).parameters
    assert "args" not in parameters
    assert {"num_classes", "in_channels"} <= set(parameters)
    assert all(p.annotation is not inspect.Parameter.empty for p in parameters.values())


def test_unknown_model_lists_the_valid_names() -> None:
    with pytest.raises(UserError, match="Unknown --model_type 'vit'; valid names: base, better, resnet18, unet"):
        select_model(Namespace(model_type="vit"), num_classes=2, in_channels=3)


def test_equip_multi_gpu_leaves_a_single_device_model_alone() -> None:
    model = torch.nn.Linear(2, 2)
    assert equip_multi_gpu(model, Namespace(gpus=None)) is model
    assert equip_multi_gpu(model, Namespace(gpus=[0])) is model
    wrapped = equip_multi_gpu(model, Namespace(gpus=[0, 1]))
    assert isinstance(wrapped, torch.nn.DataParallel) and wrapped.module is model
