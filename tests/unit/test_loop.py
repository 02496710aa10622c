"""train_one_epoch / evaluate on a toy model: gradient hygiene, accumulation, NaN stop, metric reduce."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ocr_core.engine.loop import NonFiniteLossError, StepSettings, StepState, evaluate, train_one_epoch


class Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(2, 1, bias=False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"maps": self.lin(x)}


def mse(preds: dict[str, torch.Tensor], batch: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    loss = ((preds["maps"].squeeze(1) - batch[1]) ** 2).mean()
    return {"loss": loss, "loss_mse": loss.detach()}


def _batches() -> list[list[torch.Tensor]]:
    return [[torch.tensor([[1.0, 0.0]]), torch.tensor([1.0])],
            [torch.tensor([[0.0, 1.0]]), torch.tensor([-1.0])],
            [torch.tensor([[1.0, 1.0]]), torch.tensor([0.5])],
            [torch.tensor([[2.0, 0.0]]), torch.tensor([0.0])]]


def _run(accum: int, lr: float = 0.1) -> tuple[Toy, StepState]:
    torch.manual_seed(0)
    model = Toy()
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    state = StepState()
    train_one_epoch(model, _batches(), mse, opt, sched, state,
                    StepSettings(device=torch.device("cpu"), print_batch_step=0, grad_accum_steps=accum))
    return model, state


def test_gradients_are_zeroed_every_step() -> None:
    """Each SGD step must use only its own batch's gradient (OpenOCR's fp32 path forgot zero_grad)."""
    model, state = _run(accum=1)
    torch.manual_seed(0)
    ref = Toy()
    w = ref.lin.weight.detach().clone()
    for x, y in _batches():
        w = w.requires_grad_(True)
        loss = ((x @ w.t()).squeeze(1) - y).pow(2).mean()
        (g,) = torch.autograd.grad(loss, w)
        w = (w - 0.1 * g).detach()
    assert state.global_step == 4
    assert torch.allclose(model.lin.weight, w, atol=1e-7)


def test_gradient_accumulation_equals_mean_of_microbatch_gradients() -> None:
    model, state = _run(accum=2)
    torch.manual_seed(0)
    w = Toy().lin.weight.detach().clone()
    batches = _batches()
    for i in range(0, 4, 2):
        grads = []
        for x, y in batches[i:i + 2]:
            wr = w.clone().requires_grad_(True)
            loss = ((x @ wr.t()).squeeze(1) - y).pow(2).mean()
            grads.append(torch.autograd.grad(loss, wr)[0])
        w = w - 0.1 * (grads[0] + grads[1]) / 2
    assert state.global_step == 2
    assert torch.allclose(model.lin.weight, w, atol=1e-7)


def test_non_finite_loss_stops_with_every_term() -> None:
    model = Toy()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)

    def bad(preds: dict, batch: list) -> dict:
        loss = preds["maps"].sum() * float("nan")
        return {"loss": loss, "loss_shrink_maps": torch.tensor(0.25), "loss_threshold_maps": loss.detach()}

    with pytest.raises(NonFiniteLossError, match=r"global_step 1: loss=nan, loss_shrink_maps=0.25, loss_threshold_maps=nan"):
        train_one_epoch(model, _batches(), bad, opt, sched, StepState(),
                        StepSettings(device=torch.device("cpu"), print_batch_step=0))


def test_max_steps_and_after_step_hook() -> None:
    model = Toy()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    seen = []
    state = StepState()
    out = train_one_epoch(model, _batches(), mse, opt, sched, state,
                          StepSettings(device=torch.device("cpu"), print_batch_step=0, max_steps=3),
                          after_step=lambda st, logs: seen.append((st.global_step, round(logs["lr"], 3))) or False)
    assert state.global_step == 3 and out["steps"] == 3
    assert seen == [(1, 0.1), (2, 0.1), (3, 0.1)]


class CountMetric:
    main_indicator = "acc"

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.c = {"correct": 0.0, "all": 0.0}

    def __call__(self, post: list[bool], batch: list) -> None:
        self.c["correct"] += sum(post)
        self.c["all"] += len(post)

    def counters(self) -> dict[str, float]:
        return dict(self.c)

    def set_counters(self, d: dict[str, float]) -> None:
        self.c = dict(d)

    def get_metric(self) -> dict[str, float]:
        out = {"acc": self.c["correct"] / self.c["all"]}
        self.reset()
        return out


def test_evaluate_uses_counters_and_reports_fps() -> None:
    model = Toy()
    with torch.no_grad():
        model.lin.weight.copy_(torch.tensor([[1.0, -1.0]]))
    batches = [[torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([1.0, 1.0])]]

    def post(preds: dict, labels) -> list[bool]:  # noqa: ANN001
        return [bool(p > 0) == bool(lab > 0) for p, lab in zip(preds["maps"].squeeze(1).tolist(), labels)]

    out = evaluate(model, batches, post, CountMetric(), device=torch.device("cpu"), model_type="rec",
                   show_progress=False)
    assert out["acc"] == 0.5 and out["fps"] > 0
