"""metrics.py, loss.py, the Meter and the EMA update: values checked against numbers worked out by hand."""

import pytest
import torch

from loss import LOSSES
from metrics import (
    add_confusion,
    confusion_matrix,
    overall_accuracy,
    per_class_accuracy,
    predicted_class,
    topk_accuracy,
)
from tasks import Meter, select_loss
from tasks.classification import ClassificationTask
from utils.ema import EmaModel
from utils.errors import UserError

# 4 samples, 3 classes. Argmax: 0, 2, 1, 2. Labels: 0, 1, 1, 2 -> samples 0, 2, 3 right.
PRED = torch.tensor([[5.0, 1.0, 0.0], [0.0, 2.0, 3.0], [1.0, 4.0, 2.0], [0.0, 1.0, 9.0]])
LABEL = torch.tensor([0, 1, 1, 2])


def test_accuracy() -> None:
    assert overall_accuracy(confusion_matrix(PRED.argmax(1), LABEL, PRED.shape[1])) == 0.75


def test_topk_accuracy() -> None:
    assert topk_accuracy(PRED, LABEL, k=1).item() == 0.75
    assert topk_accuracy(PRED, LABEL, k=2).item() == 1.0  # sample 1: class 1 is second best
    assert topk_accuracy(PRED, LABEL, k=10).item() == 1.0  # k larger than the classes


def test_predicted_class_is_the_first_highest_score_per_sample_and_pixel() -> None:
    assert predicted_class(PRED).tolist() == [0, 2, 1, 2]
    scores = torch.zeros(2, 3, 4, 5)
    scores[0, 2, 1, 3] = scores[1, 1, 0, 0] = 1.0
    scores[1, 2, 0, 0] = 1.0  # a tie: the first of the highest scores, as argmax
    expected = torch.zeros(2, 4, 5, dtype=torch.long)
    expected[0, 1, 3], expected[1, 0, 0] = 2, 1
    assert torch.equal(predicted_class(scores), expected)
    scores = torch.randn(3, 11, 7, 9)
    assert torch.equal(predicted_class(scores), scores.argmax(1))


def test_confusion_matrix_and_per_class_accuracy() -> None:
    confusion = confusion_matrix(PRED.argmax(1), LABEL, num_classes=4)
    expected = torch.zeros(4, 4, dtype=torch.long)
    expected[0, 0] = expected[1, 2] = expected[1, 1] = expected[2, 2] = 1
    assert torch.equal(confusion, expected)
    per_class = per_class_accuracy(confusion)
    assert per_class[:3].tolist() == [1.0, 0.5, 1.0]
    assert per_class[3].isnan()  # no sample of class 3


def test_confusion_counts_add_up_in_a_meter_and_continue_from_its_state() -> None:
    """Counted in place, batch after batch; a resumed epoch starts from its checkpoint's counts."""
    meter = Meter()
    add_confusion(meter.counter("confusion", (4, 4), PRED.device), PRED[:2].argmax(1), LABEL[:2])
    resumed = Meter(meter.state_dict())
    assert torch.equal(resumed.results()[1]["confusion"], meter.results()[1]["confusion"])  # before its first batch
    for each in (meter, resumed):
        add_confusion(each.counter("confusion", (4, 4), PRED.device), PRED[2:].argmax(1), LABEL[2:])
        assert torch.equal(each.results()[1]["confusion"], confusion_matrix(PRED.argmax(1), LABEL, num_classes=4))
    ignored = confusion_matrix(torch.tensor([0, 1, 2]), torch.tensor([0, 255, 2]), 3, ignore_index=255)
    assert ignored.sum() == 2 and ignored.trace() == 2


def test_a_meter_continues_from_its_state_without_changing_it() -> None:
    first = Meter()
    first.add_mean("loss", torch.tensor(2.0), n=3)
    state = first.state_dict()
    resumed = Meter(state)
    resumed.add_mean("loss", torch.tensor(6.0), n=1)
    assert resumed.results()[0] == {"loss": 3.0} and state["sums"]["loss"].item() == 6.0


def test_a_meter_weights_batch_means_by_batch_size() -> None:
    # Batch 1: 3 samples, acc 1.0; batch 2: 1 sample, acc 0.0. Exact: 3/4, not (1 + 0) / 2.
    meter = Meter()
    meter.add_mean("acc", torch.tensor(1.0), n=3)
    meter.add_mean("loss", 2.0, n=3)
    meter.add_mean("acc", torch.tensor(0.0), n=1)
    meter.add_mean("loss", 6.0, n=1)
    assert meter.results() == ({"acc": 0.75, "loss": 3.0}, {})


def test_an_empty_meter_holds_nothing() -> None:
    assert Meter().results() == ({}, {})


def loss_of(flags: dict, task: ClassificationTask | None = None):
    return select_loss(flags, task or ClassificationTask([str(i) for i in range(3)], 255))[0]


def test_losses_by_name() -> None:
    assert set(LOSSES) >= {"cross_entropy", "l1", "mse", "dice", "ce_dice"}  # a user may add more
    ce = loss_of({})(PRED, LABEL).item()  # --loss left out: the task's default, cross entropy
    assert ce == pytest.approx(torch.nn.functional.cross_entropy(PRED, LABEL).item())
    assert loss_of({"label_smoothing": 0.1})(PRED, LABEL).item() > ce  # penalises confidence
    with pytest.raises(UserError, match="--label_smoothing 0.1 is a flag of --loss cross_entropy / ce_dice, but "
                                        "this run's loss is --loss dice"):
        loss_of({"loss": "dice", "label_smoothing": 0.1})
    with pytest.raises(UserError, match="--loss cross_entropy cannot be built with label_smoothing=1.5"):
        loss_of({"label_smoothing": 1.5})


def test_cross_entropy_takes_the_soft_targets_of_mixup() -> None:
    soft = torch.nn.functional.one_hot(LABEL, PRED.shape[1]).float()
    loss = loss_of({"loss": "cross_entropy"})
    assert loss(PRED, soft).item() == pytest.approx(loss(PRED, LABEL).item())


def test_l1_and_mse_compare_probabilities_with_one_hot_targets() -> None:
    pred = torch.tensor([[0.0, 0.0]])  # softmax: 0.5, 0.5; one-hot target: 1, 0
    label = torch.tensor([0])
    assert LOSSES["l1"]()(pred, label).item() == pytest.approx(0.5)
    assert LOSSES["mse"]()(pred, label).item() == pytest.approx(0.25)
    assert LOSSES["mse"]()(torch.tensor([1.0, 3.0]), torch.tensor([0.0, 0.0])).item() == 5.0  # regression


def test_unknown_loss_lists_the_valid_names() -> None:
    with pytest.raises(UserError, match=f"Unknown --loss 'no_such_loss'; valid names: {', '.join(LOSSES)}"):
        loss_of({"loss": "no_such_loss"})


@pytest.mark.parametrize("decay", [0.9, 0.3])  # 0.3: the ramp reaches the flag's value at the 3rd update
def test_ema_decay_ramps_up_to_the_flag_and_averages_buffers(decay: float) -> None:
    # The n-th update after the first keeps min(decay, (1 + n) / (10 + n)) of the average.
    model = torch.nn.BatchNorm1d(1)
    ema = EmaModel(model, decay)
    weight = steps = 0.0
    for n, value in enumerate([0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0]):
        model.weight.data.fill_(value)
        model.num_batches_tracked.fill_(100 * (n + 1))
        ema.update_parameters(model)
        keep = min(decay, (1 + n) / (10 + n)) if n else 0.0  # the first update copies the weights
        weight, steps = keep * weight + (1 - keep) * value, int(keep * steps + (1 - keep) * 100 * (n + 1))
        assert ema.module.weight.item() == pytest.approx(weight, rel=1e-6)
        assert ema.module.num_batches_tracked.item() == pytest.approx(steps, abs=1)  # integers stay integers
    assert ema.n_averaged.item() == 7
    assert ema.module.num_batches_tracked.dtype == torch.long
