"""An epoch's optimiser steps (rnn_ff/training_steps.py) and when last.pt is written, on the CPU.

What a CUDA graph replays is EpochSteps.step with AdamW prepared for capture (its lr a float32
tensor that the scheduler fills, capturable set). A CPU cannot capture a graph, but it runs that
same function with that same optimiser: its numbers are the eager loop's, to the lr's float32
rounding, epoch after epoch while the schedule changes the lr. tests/test_cuda.py checks the
replay on a GPU against eager steps there.
"""

from __future__ import annotations

import pytest
import torch

from rnn_ff import training
from rnn_ff.model import FeedForwardApproximator
from rnn_ff.training import USER_ERRORS, CheckpointCadence, StateCopies
from rnn_ff.training_steps import CaptureError, EpochSteps, epoch_order, prepare_for_capture

N_INPUTS, N_UNITS, N_ROWS = 5, 7, 52  # 52 rows in batches of 16: a last batch of 4


def model_and_optimizer() -> tuple[FeedForwardApproximator, torch.optim.AdamW]:
    torch.manual_seed(0)
    model = FeedForwardApproximator(N_INPUTS, N_UNITS, hidden=16, hidden_layers=2)
    inputs, targets = data()
    model.fit_normalisation(inputs, targets)
    return model, torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4, fused=True)


def data() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    inputs = torch.rand(N_ROWS, N_INPUTS, generator=generator)
    return inputs, torch.relu(inputs @ torch.randn(N_INPUTS, N_UNITS, generator=generator) - 0.5)


def train_epochs(model, optimizer, run_epoch, epochs: int = 4, decay: float = 0.5) -> list[float]:
    """`epochs` epochs in train()'s order (shuffle, steps, scheduler: the lr times `decay` each
    epoch); the epochs' mean losses."""
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: decay ** epoch)
    shuffle = torch.Generator().manual_seed(2)
    losses = []
    for _ in range(epochs):
        losses.append(float(run_epoch(epoch_order(N_ROWS, shuffle, torch.device("cpu")))))
        scheduler.step()
    return losses


def plain_loop(model, optimizer, batch_size: int = 16, grad_clip: float = 0.5):
    """The textbook loop: a fresh gradient each step, the loss averaged over the epoch's batches."""
    inputs, targets = data()

    def run_epoch(order: torch.Tensor) -> torch.Tensor:
        losses = []
        for rows in order.split(batch_size):
            optimizer.zero_grad(set_to_none=True)
            loss = model.loss(inputs[rows], targets[rows])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            losses.append(loss.detach())
        return torch.stack(losses).mean()
    return run_epoch


def epoch_steps(model, optimizer) -> EpochSteps:
    return EpochSteps(model, optimizer, *data(), batch_size=16, grad_clip=0.5)


def test_epoch_steps_give_the_plain_loops_weights_bit_for_bit():
    """Gradients zeroed in place (as a graph needs them) rather than dropped change no number."""
    reference, reference_optimizer = model_and_optimizer()
    expected = train_epochs(reference, reference_optimizer, plain_loop(reference, reference_optimizer))
    model, optimizer = model_and_optimizer()
    losses = train_epochs(model, optimizer, epoch_steps(model, optimizer).run)
    for name, value in reference.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name
    torch.testing.assert_close(losses, expected, rtol=1e-6, atol=0)


def test_the_step_a_cuda_graph_replays_gives_the_eager_numbers():
    """AdamW prepared for capture (lr a float32 tensor the scheduler fills in place, capturable),
    stepped by the function a graph captures, against the eager loop with a Python-float lr: the
    same weights to float32 rounding while the lr halves every epoch. A schedule frozen into the
    graph (a float lr) would keep the first epoch's lr and miss by orders of magnitude more."""
    reference, reference_optimizer = model_and_optimizer()
    expected = train_epochs(reference, reference_optimizer, plain_loop(reference, reference_optimizer))
    model, optimizer = model_and_optimizer()
    prepare_for_capture(optimizer)
    losses = train_epochs(model, optimizer, epoch_steps(model, optimizer).run)
    assert all(isinstance(group["lr"], torch.Tensor) and group["capturable"] for group in optimizer.param_groups)
    assert float(optimizer.param_groups[0]["lr"]) == torch.tensor(3e-3 * 0.5 ** 4, dtype=torch.float32).item()
    torch.testing.assert_close(model.state_dict(), reference.state_dict(), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(losses, expected, rtol=1e-5, atol=0)
    frozen, frozen_optimizer = model_and_optimizer()  # what a graph with the first lr frozen in would do
    train_epochs(frozen, frozen_optimizer, epoch_steps(frozen, frozen_optimizer).run, decay=1.0)
    error = max((frozen.state_dict()[name] - value).abs().max().item()
                for name, value in reference.state_dict().items())
    assert error > 1e-4


def test_the_cadence_keeps_writing_under_two_percent_of_the_time(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(training.time, "perf_counter", lambda: clock[0])
    cadence = CheckpointCadence(every=0)
    assert cadence.due(epoch=1)  # the first write measures what a write costs
    with cadence.writing():
        clock[0] += 1.0  # a write of one second
    clock[0] += 48.9
    assert not cadence.due(epoch=2)
    clock[0] += 0.1  # 49 s of training per second of writing: 2%
    assert cadence.due(epoch=3)
    with cadence.writing():
        clock[0] += 0.1  # a faster write: the next one is due sooner
    clock[0] += 4.8
    assert not cadence.due(epoch=4)
    clock[0] += 0.2
    assert cadence.due(epoch=5)
    every_third = CheckpointCadence(every=3)
    assert [epoch for epoch in range(1, 10) if every_third.due(epoch)] == [3, 6, 9]


def test_state_copies_hold_the_epoch_they_were_taken_at_and_follow_a_changed_state():
    """The snapshot each epoch (what last.pt gets at Ctrl-C or a non-finite loss) stays as it was
    while training goes on, is refreshed in place by the next call, and follows AdamW's lr
    turning into a tensor (prepare_for_capture)."""
    model, optimizer = model_and_optimizer()
    run_epoch = epoch_steps(model, optimizer).run
    run_epoch(torch.randperm(N_ROWS))
    copies = StateCopies()

    def state() -> dict:
        return {"model": model.state_dict(), "optimizer": optimizer.state_dict()}

    snapshot = copies(state())
    kept = {name: value.clone() for name, value in snapshot["model"].items()}
    run_epoch(torch.randperm(N_ROWS))
    assert all(torch.equal(snapshot["model"][name], value) for name, value in kept.items())  # not the live weights
    again = copies(state())
    assert again["model"]["output_layer.bias"] is snapshot["model"]["output_layer.bias"]  # refreshed in place
    torch.testing.assert_close(again, state(), rtol=0, atol=0)
    prepare_for_capture(optimizer)
    changed = copies(state())
    assert isinstance(changed["optimizer"]["param_groups"][0]["lr"], torch.Tensor)
    torch.testing.assert_close(changed, state(), rtol=0, atol=0)


def test_a_failed_capture_is_a_one_line_error_naming_the_switch(monkeypatch):
    """A step that a GPU cannot capture ends the run with one line (train.py's USER_ERRORS) that
    says how to train without graphs."""
    def refuse(*args, **kwargs):
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(torch.cuda, "CUDAGraph", lambda: None)
    monkeypatch.setattr(torch.cuda, "Stream", lambda *args, **kwargs: None)
    monkeypatch.setattr(torch.cuda, "graph", refuse)
    model, optimizer = model_and_optimizer()
    with pytest.raises(CaptureError, match="trainer.cuda_graphs=false trains without") as error:
        epoch_steps(model, optimizer)._capture(16)
    assert isinstance(error.value, USER_ERRORS) and "\n" not in str(error.value)
