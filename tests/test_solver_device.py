"""The solver on a GPU without the host in its loop, shown on a CPU-only machine.

Two things a GPU would reveal are checked here: (1) how often a window of the solve waits
for the host (operations that force a synchronisation on CUDA are counted at the dispatcher
and at the Python level); (2) that the per-window tensor work keeps every tensor on the
device, under FakeTensorMode, where tensors on "cuda" exist without a GPU and mixing devices
fails as it would on one.
"""

from __future__ import annotations

import contextlib
from copy import copy as dataclass_copy
from dataclasses import fields

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode

import rnn_ff.solver.regions as regions
import rnn_ff.solver.core as core
from rnn_ff import WTAConfig, wta_network
from rnn_ff.solver import SolverOptions, solve
from rnn_ff.solver.classification import judge
from rnn_ff.solver.integration import capped_velocity
from rnn_ff.solver.regions import (active_set_fixed_points, analyse_regions, pack_active_sets, settling_horizon,
                                   stays_in_region)
from rnn_ff.solver.tracking import RunningSamples

# aten operations that make a CUDA stream wait for the host: a scalar read, and the ops whose
# output size depends on the data.
_SYNCING_OPS = {"aten._local_scalar_dense", "aten.nonzero", "aten._unique2", "aten.unique_dim",
                "aten.unique_consecutive", "aten.masked_select", "aten.repeat_interleave"}


class SyncCounter(TorchDispatchMode):
    """Counts the calls that would force a host synchronisation on a GPU."""

    def __init__(self) -> None:
        super().__init__()
        self.count, self.paused = 0, False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func.overloadpacket._qualified_op_name.replace("::", ".")
        boolean_index = name in ("aten.index", "aten.index_put_", "aten.index_put") and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (args[1] if len(args) > 1 else ()) or ())
        if not self.paused and (name in _SYNCING_OPS or boolean_index):
            self.count += 1
        return func(*args, **kwargs)


@contextlib.contextmanager
def counting_syncs(monkeypatch):
    """Yield a counter and the list of counts at the start of each window; the integrator's own
    step-size decisions (torchdiffeq's, not ours) are left out."""
    counter, marks = SyncCounter(), []
    real_integrate = core.integrate_window

    def integrate_without_counting(*args, **kwargs):
        marks.append(counter.count)
        counter.paused = True
        try:
            return real_integrate(*args, **kwargs)
        finally:
            counter.paused = False

    def host_copy(method):
        def counted(self, *args, **kwargs):
            if not counter.paused:
                counter.count += 1
            return method(self, *args, **kwargs)
        return counted

    real_analysis = regions._host_analysis

    def analysis_counting_transfers(*args, **kwargs):
        """Regions go to the CPU and their table back to the device: two waits; the
        eigen-analysis between them is host work that no GPU waits for."""
        counter.count += 2
        counter.paused = True
        try:
            return real_analysis(*args, **kwargs)
        finally:
            counter.paused = False

    monkeypatch.setattr(core, "integrate_window", integrate_without_counting)
    monkeypatch.setattr(regions, "_host_analysis", analysis_counting_transfers)
    for name in ("tolist", "cpu", "numpy", "item"):
        monkeypatch.setattr(torch.Tensor, name, host_copy(getattr(torch.Tensor, name)))
    with counter:
        yield counter, marks


def syncs_per_window(monkeypatch, network, inputs) -> list[int]:
    with counting_syncs(monkeypatch) as (counter, marks):
        solve(network, inputs, SolverOptions(chunk_size=len(inputs)))
    return [later - earlier for earlier, later in zip(marks, marks[1:])]


def test_a_window_waits_for_the_host_a_constant_number_of_times(monkeypatch):
    """At most 7 per window on the CPU (the status counts; the largest active set; which samples sit on
    a wall; the unique of the active sets; how many samples go on to the certificate's path check; new
    regions to the CPU and their table back; a GPU adds how many of them its stability screen leaves to
    the eigensolver), the same for 32 or 512 inputs and for 1 or hundreds of regions."""
    network = wta_network(WTAConfig(n_excitatory=16, self_excitation=1.2))  # competition takes several windows
    generator = torch.Generator().manual_seed(0)
    many_regions = torch.rand(512, 16, generator=generator, dtype=torch.float64)
    few = syncs_per_window(monkeypatch, network, many_regions[:32])
    many = syncs_per_window(monkeypatch, network, many_regions)
    one_region = syncs_per_window(monkeypatch, network, many_regions[:1].expand(512, -1).clone())
    assert few and many and one_region
    assert max(few) <= 7 and max(many) <= 7 and max(one_region) <= 7
    assert max(many) == max(few)


def test_the_sync_counter_sees_what_a_gpu_would_wait_for():
    x = torch.randn(6, 3)
    with SyncCounter() as counter:
        x[x[:, 0] > 0]  # boolean mask: nonzero inside
        x.sum().item()
        torch.unique(x, dim=0)
        x[:, 0].nonzero()
        torch.where(x > 0, x, 0.0).sum(0)  # no wait
    assert counter.count == 4


def moved(obj, device: str):
    """A copy of a dataclass with every tensor field moved to `device` (no __post_init__ checks,
    which read values that meta tensors do not have)."""
    copy = dataclass_copy(obj)
    for f in fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, torch.Tensor):
            setattr(copy, f.name, value.to(device))
    return copy


def test_off_cpu_devices_refuse_mixed_tensors_as_a_gpu_does():
    """The rule the next tests rely on: a CPU tensor (not 0-dim) in an op on another device raises.
    FakeTensorMode applies it to 'cuda' tensors; the 'meta' device applies the same rule, and unlike
    fake 'cuda' tensors on a CPU-only build of torch, meta tensors can be sliced and indexed."""
    with FakeTensorMode():
        with pytest.raises(Exception, match="(?i)device"):
            torch.ones(3, 4) / torch.ones((), device="cuda")
        assert (torch.ones(3, 4, device="cuda") / torch.ones(())).device.type == "cuda"
    with pytest.raises(RuntimeError, match="device"):
        torch.ones(3, 4) / torch.ones((), device="meta")
    assert (torch.ones(3, 4, device="meta") / torch.ones(())).device.type == "meta"


def test_the_right_hand_side_runs_on_fake_cuda():
    network = wta_network(WTAConfig(n_excitatory=4, self_excitation=0.5))
    with FakeTensorMode():
        on_cuda = dataclass_copy(network)
        for f in fields(network):
            value = getattr(network, f.name)
            if isinstance(value, torch.Tensor):
                setattr(on_cuda, f.name, torch.empty(value.shape, dtype=value.dtype, device="cuda"))
        states = torch.empty(6, 5, dtype=torch.float64, device="cuda")
        velocity = capped_velocity(on_cuda, states, on_cuda.drive(torch.empty(6, 4, dtype=torch.float64,
                                                                             device="cuda")), 1e7)
        assert velocity.device.type == "cuda"


def test_window_updates_keep_every_tensor_on_the_device():
    """The right-hand side, the trackers, the region fixed points, the certificate, the acceptance
    rule and the compaction, run on a device other than the CPU: any CPU tensor mixed in would
    raise here, as on a GPU. (The region lookup, torch.unique, is data-dependent and left out.)"""
    cpu_network = wta_network(WTAConfig(n_excitatory=4, self_excitation=0.5))
    cpu_states = torch.rand(6, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    # The region table is analysed on the CPU (as in the solver), then moved to the device.
    cpu_table, studied, _, _ = analyse_regions(cpu_network, cpu_states > 0, pack_active_sets(cpu_states), torch.float64,
                                            1e-9, 5)
    assert len(studied) == len(cpu_states)  # a soft WTA: every region is stable
    options = SolverOptions()
    network, table, states = moved(cpu_network, "meta"), moved(cpu_table, "meta"), cpu_states.to("meta")
    drive = network.drive(states[:, :4])
    velocity = capped_velocity(network, states, drive, 1e7)
    running = RunningSamples.start(drive, states)
    trajectory = torch.stack([states, states + velocity, states + 2 * velocity])
    running.track(trajectory, 0.5, 1, options)
    oscillating = running.oscillating(options)
    running.reset_block(trajectory[-1])
    rows = torch.arange(len(states), device="meta")
    fixed = active_set_fixed_points(network, drive, table.active, table.valid)
    horizon = settling_horizon(table, rows, states, fixed)
    certified = stays_in_region(network, table, rows, states, fixed, horizon.clamp_max(100.0))
    verdict = judge(network, fixed, states, drive, certified, ~certified, certified, ~oscillating, options)
    kept = running.keep(trajectory[-1], verdict.accepted, 3)
    produced = [velocity, oscillating, fixed, horizon, certified, verdict.polished, verdict.accepted, kept.states, kept.ids]
    assert {t.device.type for t in produced} == {"meta"}
