"""--ema_decay: an exponential moving average of the weights (and BatchNorm statistics),
validated beside them every epoch.

torch's AveragedModel holds the averaged copy and its count `n_averaged`; this subclass
changes only the update. AveragedModel.update_parameters reads `n_averaged` on the host every
step (`n_averaged == 0`, `n_averaged > 0`) and copies it to the device: on a GPU, each is a
wait for all queued work. Here the count lives on the model's device and everything is
computed there, so an update never waits.
"""

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from utils.torch_utils import unwrap_model


class EmaModel(AveragedModel):
    """The average keeps min(decay, (1 + n) / (10 + n)) of itself at its n-th update after
    the first, which copies the weights (TensorFlow's ExponentialMovingAverage with
    num_updates). With a fixed 0.999 the average of a 1,000-step run would still hold 37% of
    the random start; with the ramp it follows the early, fast-changing weights closely."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        super().__init__(model, device=next(model.parameters()).device, use_buffers=True)
        self.decay = decay

    @torch.no_grad()
    def update_parameters(self, model: nn.Module) -> None:
        """One step of the average towards `model`'s weights (inside DDP or torch.compile's wrapper)."""
        model = unwrap_model(model)
        n = self.n_averaged.float()
        keep = torch.where(n == 0, 0.0, torch.clamp((1 + n) / (10 + n), max=self.decay))
        pairs = list(zip([*self.module.parameters(), *self.module.buffers()],
                         [t.detach() for t in (*model.parameters(), *model.buffers())], strict=True))
        floats = [pair for pair in pairs if pair[0].is_floating_point()]
        if floats:
            averaged, current = (list(side) for side in zip(*floats, strict=True))
            torch._foreach_mul_(averaged, keep)
            torch._foreach_add_(averaged, torch._foreach_mul(current, 1 - keep))
        for averaged_int, current_int in (pair for pair in pairs if not pair[0].is_floating_point()):
            averaged_int.copy_(averaged_int * keep + current_int * (1 - keep))  # truncated, as torch's own EMA
        self.n_averaged += 1
