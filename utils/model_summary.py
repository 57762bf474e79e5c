"""What a model costs: its parameters (trainable and frozen) and the FLOPs of one forward pass
per sample, counted by torch.utils.flop_counter. Printed when a run starts and kept in its
run_info.json (`"model"`), so runs can be compared by size and cost as well as by accuracy.

FLOPs, not MACs: a multiply-add counts as 2 FLOPs (many papers and tools report MACs, half
as many). FlopCounterMode counts the operators that dominate (matrix products, convolutions,
attention), not element-wise ones (activations, normalisation, additions); a backward pass
costs about twice the forward one, so a training step costs about 3 x the figure.
"""

import logging

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

log = logging.getLogger(__name__)


def model_summary(model: nn.Module, sample: Tensor) -> dict[str, int | None]:
    """Parameter counts and forward FLOPs per sample of `model` on `sample` (C x H x W), run
    once in eval mode without gradients: nothing of the model changes (no BatchNorm
    statistics move, no random number is drawn)."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(sample.unsqueeze(0).to(next(model.parameters()).device))
        flops = int(counter.get_total_flops())
    except Exception as error:  # an operator the counter cannot follow: the run goes on without the figure
        log.warning(f"FLOPs not counted: torch.utils.flop_counter failed on the model ({type(error).__name__}: "
                    f"{(str(error).strip().splitlines() or [''])[0]})")
        flops = None
    finally:
        model.train(was_training)
    return {"parameters": total, "trainable_parameters": trainable, "frozen_parameters": total - trainable,
            "forward_flops_per_sample": flops}


def describe_summary(summary: dict[str, int | None]) -> str:
    """One line for the log: `12,345 parameters (12,345 trainable, 0 frozen), 20.6 MFLOPs a forward pass per sample`."""
    flops = summary["forward_flops_per_sample"]
    return (f"{summary['parameters']:,} parameters ({summary['trainable_parameters']:,} trainable, "
            f"{summary['frozen_parameters']:,} frozen), "
            + (f"{si(flops)}FLOPs a forward pass per sample" if flops is not None else "FLOPs not counted"))


def si(value: float) -> str:
    """`20.6 M`: a number with an SI prefix (k, M, G, T), three significant digits."""
    for prefix, size in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:.3g} {prefix}"
    return f"{value:.3g} "
