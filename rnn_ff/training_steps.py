"""An epoch's optimiser steps: run eagerly on a CPU, each replayed from a CUDA graph on a GPU.

The default models are small (e.g. a 2 x 256 MLP on batches of 256): on a GPU a step is some
forty kernels of a few microseconds each, and launching them one by one from Python takes longer
than running them. Captured once in a CUDA graph (PyTorch's "whole-network capture"), a step is
one launch. The step is the same function on every device: a CPU runs it eagerly, so the CPU
tests check the numbers of what a GPU replays (tests/test_training_steps.py), and
tests/test_cuda.py checks the replay against eager steps on a GPU.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

from rnn_ff.model import FeedForwardApproximator

# Eager steps before the first capture, on a side stream, as PyTorch's CUDA graph notes ask:
# they initialise AdamW's state and cuBLAS's workspace outside the graph. They are real steps.
WARMUP_STEPS = 3


class CaptureError(RuntimeError):
    """The step could not be captured in a CUDA graph (the message says how to train without)."""


class EpochSteps:
    """The optimiser steps over the training set, batch by batch in a given order, on its device.

    Nothing here waits for the device: run() returns the epoch's mean batch loss as a tensor there,
    and the training loop fetches it with the validation metrics, once per epoch. With cuda_graphs,
    after WARMUP_STEPS eager steps each batch size (the full one, and a smaller last batch where the
    training set does not divide) is captured once; its later steps copy the batch's row indices
    into the graph's index tensor and replay it."""

    def __init__(self, model: FeedForwardApproximator, optimizer: torch.optim.Optimizer, inputs: torch.Tensor,
                 targets: torch.Tensor, batch_size: int, grad_clip: float, loss_kind: str = "rectified",
                 cuda_graphs: bool = False) -> None:
        self.model, self.optimizer = model, optimizer
        self.inputs, self.targets = inputs, targets
        self.batch_size, self.grad_clip, self.loss_kind = batch_size, grad_clip, loss_kind
        self.cuda_graphs = cuda_graphs
        self.loss_sum = torch.zeros((), device=inputs.device)
        self.graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}
        self.eager_steps = 0

    def run(self, order: torch.Tensor) -> torch.Tensor:
        """One epoch over the training rows in `order` (a tensor on the device); the mean batch loss
        (non-finite if any batch's loss was). With CUDA graphs, streams, capture and replay belong to
        the current CUDA device: the data's is made current for the epoch (device=cuda:1 too)."""
        self.loss_sum.zero_()
        batches = order.split(self.batch_size)
        with torch.cuda.device(self.inputs.device) if self.cuda_graphs else nullcontext():
            for rows in batches:
                if not self.cuda_graphs:
                    self.step(rows)
                elif self.eager_steps < WARMUP_STEPS:
                    self._warm_up(rows)
                else:
                    graph, index = self.graphs.get(len(rows)) or self._capture(len(rows))
                    index.copy_(rows)
                    graph.replay()
        return self.loss_sum / len(batches)

    def step(self, rows: torch.Tensor) -> None:
        """One optimiser step on the training rows `rows`: what a CUDA graph captures. The
        gradients are zeroed in place, not dropped, so that a graph's replays write the same ones."""
        self.optimizer.zero_grad(set_to_none=False)
        loss = self.model.loss(self.inputs.index_select(0, rows), self.targets.index_select(0, rows), self.loss_kind)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        self.loss_sum.add_(loss.detach())

    def _warm_up(self, rows: torch.Tensor) -> None:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            self.step(rows)
        torch.cuda.current_stream().wait_stream(side)
        self.eager_steps += 1

    def _capture(self, size: int) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
        prepare_for_capture(self.optimizer)
        index = torch.zeros(size, dtype=torch.long, device=self.inputs.device)
        graph = torch.cuda.CUDAGraph()
        try:  # on a capture stream of this device (torch.cuda.graph's default is made once per process)
            with torch.cuda.graph(graph, stream=torch.cuda.Stream()):
                self.step(index)
        except RuntimeError as error:
            raise CaptureError(f"the training step could not be captured in a CUDA graph ({error}); "
                               "trainer.cuda_graphs=false trains without") from error
        self.graphs[size] = graph, index
        return graph, index


def prepare_for_capture(optimizer: torch.optim.Optimizer) -> None:
    """AdamW as a graph replays it: its learning rate a float32 tensor on the device (the scheduler
    fills it in place; a Python float would be frozen into the graph) and capturable set (AdamW
    refuses to be captured without it). Changes the numbers only by the lr's float32 rounding."""
    for group in optimizer.param_groups:
        device = group["params"][0].device
        if not isinstance(group["lr"], torch.Tensor):
            group["lr"] = torch.tensor(group["lr"], dtype=torch.float32, device=device)
        group["capturable"] = True


def epoch_order(n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """The epoch's order of the training rows, drawn on the CPU (the same on every device) and
    copied to the device from pinned memory, so that the copy does not wait for the device."""
    order = torch.randperm(n, generator=generator)
    if device.type == "cuda":
        order = order.pin_memory()
    return order.to(device, non_blocking=True)
