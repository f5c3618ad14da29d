"""The device rule of a run, checked without a GPU.

Under FakeTensorMode, tensors on "cuda" exist on any machine and PyTorch refuses to combine
them with CPU tensors as a GPU does (except a CPU 0-dim tensor, which it treats as a number).
Each step of a run that combines tensors runs here with its model and data on that fake GPU,
through the same functions train() and the scripts call: a tensor left on the CPU fails the
test as it would fail a GPU run. Fake tensors hold no values, so these tests check devices
only; the numbers are checked by the CPU runs of the other test files.
"""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path

import numpy as np
import pytest
import torch
from torch._subclasses.fake_tensor import DataDependentOutputException, FakeTensorMode

import rnn_ff.checkpoint
from rnn_ff.checkpoint import load_approximator, load_checkpoint, save_checkpoint
from rnn_ff.data import Split
from rnn_ff.evaluation import evaluate, measure_speed
from rnn_ff.model import FeedForwardApproximator
from rnn_ff.solver import SolverOptions
from rnn_ff.tasks import TASKS, build_task
from rnn_ff.training import current_lr, restore, validation_metrics
from rnn_ff.training_steps import EpochSteps, epoch_order, prepare_for_capture

GPU = torch.device("cuda")
N_INPUTS, N_UNITS = 4, 5


@functools.cache
def _lend_cuda_device_guard() -> None:
    """Give a CPU-only build of torch the no-op CUDA device guard that its CUDA build installs
    under FakeTensorMode on a machine without a GPU (c10::impl::ensureCUDADeviceGuardSet, which
    in torch 2.13 only replaces a guard that exists). Without one, Module.to("cuda"), indexing
    and copy_ of fake CUDA tensors fail with "PyTorch is not linked with support for cuda devices".
    torch registers a Python guard only for PrivateUse1: register it there, then put its address
    in the CUDA slot of c10's guard registry. It stays for the rest of the process, harmlessly:
    torch.cuda.is_available() is still false, and real CUDA tensors still cannot be made."""
    device_type = torch._C._autograd.DeviceType

    class NoOpCudaGuard(torch._C._acc.DeviceGuard):  # defined here: CUDA builds of torch may lack _acc
        """torch's Python-defined device guard, which does nothing, for the device type named here."""

        def type_(self):
            return device_type.CUDA

    if not torch._C._acc.register_python_privateuseone_device_guard(NoOpCudaGuard()):
        raise RuntimeError("another PrivateUse1 device guard is registered in this process")
    c10 = ctypes.CDLL(str(Path(torch.__file__).parent / "lib" / "libc10.so"))
    slots = ctypes.c_void_p * (int(device_type.PrivateUse1) + 1)
    registry = slots.in_dll(c10, "_ZN3c104impl26device_guard_impl_registryE")
    register = c10["_ZN3c104impl19registerDeviceGuardENS_10DeviceTypeEPKNS0_24DeviceGuardImplInterfaceE"]
    register.argtypes = (ctypes.c_int8, ctypes.c_void_p)
    register(int(device_type.CUDA), registry[int(device_type.PrivateUse1)])


def _gradients_where_backward_puts_them(loss: torch.Tensor, *args, **kwargs) -> None:
    """Stands in for Tensor.backward on a CPU-only build, whose autograd engine cannot run on
    fake CUDA tensors ("Cannot access accelerator device when none is available"). Autograd
    puts every leaf's gradient beside the leaf; so does this (a gradient of ones)."""
    nodes = [loss.grad_fn]
    while nodes:
        node = nodes.pop()
        if hasattr(node, "variable"):  # AccumulateGrad: a leaf that requires a gradient
            node.variable.grad = torch.ones_like(node.variable)
        nodes.extend(parent for parent, _ in node.next_functions if parent is not None)


@pytest.fixture
def fake_gpu(monkeypatch) -> FakeTensorMode:
    """A FakeTensorMode (enter it with `with`) in which "cuda" behaves, as far as devices go, as
    on a machine with a GPU; tensors made before entering it stay real CPU tensors."""
    if not torch.cuda._is_compiled():
        _lend_cuda_device_guard()
        monkeypatch.setattr(torch.Tensor, "backward", _gradients_where_backward_puts_them)
    # Pinned (page-locked) host memory needs a GPU's driver; where a run pins, the fake GPU keeps
    # the tensor as it is (its copy to the device is what these tests check).
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self, *args, **kwargs: self)
    return FakeTensorMode(allow_non_fake_inputs=True)


def tiny_split(n: int = 6) -> Split:
    """Inputs and rates in float64 on the CPU, as a dataset cache file holds them."""
    generator = torch.Generator().manual_seed(0)
    return Split(torch.rand(n, N_INPUTS, generator=generator, dtype=torch.float64),
                 torch.rand(n, N_UNITS, generator=generator, dtype=torch.float64), {})


def tiny_model() -> FeedForwardApproximator:
    torch.manual_seed(0)
    return FeedForwardApproximator(N_INPUTS, N_UNITS, hidden=8)


def adamw(model: FeedForwardApproximator) -> torch.optim.AdamW:
    return torch.optim.AdamW(model.parameters(), lr=1e-3)


def devices(tensors) -> set[str]:
    return {tensor.device.type for tensor in tensors}


def moments(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """AdamW's moment estimates (its step count stays on the CPU by PyTorch's design)."""
    return [value for state in optimizer.state.values() for name, value in state.items() if name != "step"]


def tensors_in(tree) -> list[torch.Tensor]:
    if isinstance(tree, torch.Tensor):
        return [tree]
    if isinstance(tree, dict):
        tree = list(tree.values())
    if isinstance(tree, (list, tuple)):
        return [tensor for item in tree for tensor in tensors_in(item)]
    return []


def test_the_fake_gpu_refuses_to_mix_devices_as_a_gpu_does(fake_gpu):
    with fake_gpu:
        with pytest.raises(RuntimeError, match="(?i)device"):  # FakeTensorDeviceMismatchError (torch >= 2.12)
            torch.ones(3, 4) / torch.ones((), device="cuda")
        assert (torch.ones(3, 4, device="cuda") / torch.ones(())).device.type == "cuda"


def one_epoch(model: FeedForwardApproximator, optimizer: torch.optim.Optimizer, split: Split,
              batch_size: int = 2) -> torch.Tensor:
    """An epoch of optimiser steps over `split` (on the model's device), as train() runs it."""
    steps = EpochSteps(model, optimizer, split.inputs.float(), split.rates.float(), batch_size, grad_clip=1.0)
    return steps.run(epoch_order(len(split.inputs), torch.Generator().manual_seed(0), split.inputs.device))


def test_the_fake_gpu_refuses_to_give_a_value_where_a_gpu_would_make_the_host_wait(fake_gpu):
    with fake_gpu:
        total = torch.ones(3, device="cuda").sum()
        for wait in (total.item, total.__bool__, total.tolist):
            with pytest.raises(DataDependentOutputException):
                wait()


@pytest.mark.parametrize("as_captured", [False, True], ids=["eager", "as-a-cuda-graph-replays-it"])
def test_an_epoch_keeps_everything_on_the_device_and_never_waits_for_it(fake_gpu, as_captured):
    """The whole epoch's batches are indexed on the device, and no step fetches a value from it (a
    fake tensor has none to give: .item() or a bool() of one raises): the epoch's loss, its one
    value, leaves the device with the validation metrics. as_captured: with AdamW's lr a tensor on
    the device, as a CUDA graph replays the step (the scheduler fills it in place)."""
    model, data = tiny_model(), tiny_split()
    with fake_gpu:
        model.to(GPU)
        data = data.to(GPU)
        model.fit_normalisation(data.inputs.float(), data.rates.float())
        optimizer = adamw(model)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 0.5 ** epoch)
        if as_captured:
            prepare_for_capture(optimizer)
        loss = one_epoch(model, optimizer, data)
        scheduler.step()
        loss = one_epoch(model, optimizer, data)
    assert loss.device.type == "cuda" and loss.dim() == 0
    assert devices(model.state_dict().values()) == {"cuda"}  # the normalisation buffers included
    assert devices(parameter.grad for parameter in model.parameters()) == {"cuda"}
    assert devices(moments(optimizer)) == {"cuda"}
    if as_captured:
        assert devices(group["lr"] for group in optimizer.param_groups) == {"cuda"}
        assert current_lr(scheduler) == 0.5e-3  # logged without reading the tensor


def test_validation_loss_and_error_are_computed_on_the_device(fake_gpu):
    model, data = tiny_model(), tiny_split()
    task = build_task(TASKS["wta"][0](n_excitatory=N_INPUTS))
    with fake_gpu:
        model.to(GPU)
        metrics = validation_metrics(model.eval(), task, data.to(GPU))
    assert metrics.keys() == {"loss", "rel_error", "rel_error_excitatory", "rel_error_inhibitory"}
    assert devices(metrics.values()) == {"cuda"}
    assert metrics["loss"].dtype == torch.float32 and metrics["rel_error"].dtype == torch.float64


def task_config(name: str, folder: Path):
    """The task's default config; the custom task gets a small network file of its own."""
    cfg = TASKS[name][0]()
    if name == "custom":
        np.save(folder / "W.npy", 0.1 * np.eye(3))
        cfg.weights = str(folder / "W.npy")
    return cfg


@pytest.mark.parametrize("name", sorted(TASKS))
def test_prediction_and_every_metric_of_each_task_stay_on_the_device(fake_gpu, tmp_path, name):
    task = build_task(task_config(name, tmp_path))
    inputs, labels = task.sample(8, torch.Generator().manual_seed(0))
    rates = torch.rand(8, task.network.n_units, dtype=torch.float64)  # stand-ins: only devices matter here
    model = FeedForwardApproximator(task.network.n_inputs, task.network.n_units, hidden=8)
    with fake_gpu:
        model.to(GPU)
        metrics = evaluate(model.eval(), task, Split(inputs, rates, labels).to(GPU), "test")
    assert {"test/rel_error", "test/r2", "test/mse"} <= metrics.keys()
    assert devices(metrics.values()) == {"cuda"}


def test_speed_is_measured_with_inputs_and_model_on_the_device(fake_gpu, monkeypatch):
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)  # nothing to wait for
    model, data = tiny_model(), tiny_split()
    task = build_task(TASKS["wta"][0](n_excitatory=N_INPUTS))
    with fake_gpu:
        model.to(GPU)
        speed = measure_speed(model.eval(), task, data.to(GPU).inputs, SolverOptions(), torch.float64, repeats=1,
                              ode_seconds=1.0)
    assert speed.keys() == {"speed/ode_seconds_per_sample", "speed/ff_seconds_per_sample", "speed/speedup"}


def test_checkpoint_of_a_run_on_the_device_holds_only_cpu_tensors(fake_gpu, monkeypatch):
    written = []
    monkeypatch.setattr(rnn_ff.checkpoint, "atomic_save", lambda contents, path: written.append(contents))
    model, data = tiny_model(), tiny_split()
    with fake_gpu:
        model.to(GPU)
        data = data.to(GPU)
        optimizer = adamw(model)
        prepare_for_capture(optimizer)  # the lr a tensor on the device, as a run with CUDA graphs holds it
        one_epoch(model, optimizer, data)
        # train() saves a deep copy as best_model; deep-copied fake tensors crash the interpreter at exit.
        save_checkpoint("last.pt", model=model.state_dict(), optimizer=optimizer.state_dict(),
                        best_model=model.state_dict())
    saved = tensors_in(written[0])
    assert len(saved) > 2 * len(model.state_dict())  # the weights, twice, and the optimiser's state
    assert devices(saved) == {"cpu"}


def test_cpu_checkpoint_resumes_with_weights_and_optimiser_state_on_the_device(fake_gpu, tmp_path):
    model, data, path = tiny_model(), tiny_split(), tmp_path / "last.pt"
    optimizer = adamw(model)
    one_epoch(model, optimizer, data)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)
    save_checkpoint(path, model=model.state_dict(), optimizer=optimizer.state_dict(),
                    scheduler=scheduler.state_dict())

    resumed, checkpoint = tiny_model(), load_checkpoint(path)
    with fake_gpu:
        resumed.to(GPU)
        optimizer = adamw(resumed)
        restore(checkpoint, resumed, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0))
    assert devices(resumed.state_dict().values()) == {"cuda"}
    assert moments(optimizer) and devices(moments(optimizer)) == {"cuda"}


def test_checkpoint_written_on_a_gpu_loads_on_a_machine_without_one(tmp_path, monkeypatch):
    model, path = tiny_model(), tmp_path / "best.pt"
    with monkeypatch.context() as gpu_file:  # what torch.save records for tensors on a GPU
        gpu_file.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        save_checkpoint(path, model=model.state_dict(), model_hparams=model.hparams)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):  # the file does ask for a GPU
            torch.load(path, weights_only=True)
    loaded = load_approximator(path)
    assert devices(loaded.state_dict().values()) == {"cpu"}
    assert all(torch.equal(value, model.state_dict()[name]) for name, value in loaded.state_dict().items())
