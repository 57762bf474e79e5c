"""The model summary: parameters (trainable and frozen) and forward FLOPs per sample, against
hand counts; printed when a run starts and kept in its run_info.json."""

import json
from pathlib import Path

import torch
from torch import nn

from model.base import BaseNet
from utils.model_summary import describe_summary, model_summary


def small_model() -> nn.Module:
    """3 x 8 x 8 in: a 3 x 3 convolution to 4 channels (padding 1), BatchNorm, pooling, a linear layer to 5."""
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 5))


def test_flops_are_twice_the_multiply_adds_of_convolutions_and_matrix_products() -> None:
    model = small_model()
    conv_macs = 8 * 8 * 4 * (3 * 3 * 3)  # each output pixel of each output channel: 27 multiply-adds
    linear_macs = 4 * 5
    summary = model_summary(model, torch.randn(3, 8, 8))
    assert summary["forward_flops_per_sample"] == 2 * (conv_macs + linear_macs)
    assert summary["parameters"] == (4 * 27 + 4) + (4 + 4) + (4 * 5 + 5)


def test_frozen_parameters_are_counted_apart() -> None:
    model = small_model()
    for p in model[0].parameters():
        p.requires_grad_(False)
    summary = model_summary(model, torch.randn(3, 8, 8))
    assert summary["frozen_parameters"] == 4 * 27 + 4
    assert summary["trainable_parameters"] == summary["parameters"] - summary["frozen_parameters"]
    assert "112 frozen" in describe_summary(summary) and "FLOPs" in describe_summary(summary)


def test_measuring_changes_nothing_of_the_model() -> None:
    model = small_model().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sample = torch.randn(3, 8, 8)
    rng = torch.get_rng_state()
    model_summary(model, sample)
    assert model.training  # back in the mode it was in
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BatchNorm statistics too
    assert torch.equal(rng, torch.get_rng_state())


def test_a_run_keeps_its_summary_in_run_info(trained_run: Path) -> None:
    summary = json.loads((trained_run / "run_info.json").read_text())["model"]
    expected = model_summary(BaseNet(num_classes=5, in_channels=3), torch.randn(3, 32, 32))
    assert summary == expected
    assert describe_summary(summary) in (trained_run / "log.txt").read_text()


def test_a_model_the_counter_cannot_follow_still_trains_without_the_figure() -> None:
    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(3, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise NotImplementedError("an operator the counter cannot follow")

    summary = model_summary(Odd(), torch.randn(3))
    assert summary["forward_flops_per_sample"] is None and summary["parameters"] == 8
    assert describe_summary(summary).endswith("FLOPs not counted")
