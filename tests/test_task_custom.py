"""The networks people bring: weights from a state_dict, inputs from a file, populations they name."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from rnn_ff import solve
from rnn_ff.checkpoint import load_checkpoint, task_from
from rnn_ff.data import draw_inputs, load_or_generate, split_slices
from rnn_ff.random_networks import random_ei_network
from rnn_ff.tasks import TaskConfigError, build_task, custom
from rnn_ff.tasks.custom import CustomTask
from rnn_ff.training import train
from tests.conftest import TINY_RUN, compose_config, run_script


def trained_rnn_files(folder: Path, units: int = 16, inputs: int = 3) -> Path:
    """A torch.nn.RNN's state_dict as a training script saves it (nested under "rnn." as in a
    model that holds the RNN as an attribute), contracting, so that every input has one fixed point."""
    torch.manual_seed(0)
    rnn = torch.nn.RNN(inputs, units, nonlinearity="tanh")
    with torch.no_grad():
        rnn.weight_hh_l0.mul_(0.6 / torch.linalg.matrix_norm(rnn.weight_hh_l0, 2))
    path = folder / "model.pt"
    torch.save({f"rnn.{name}": value for name, value in rnn.state_dict().items()}, path)
    return path


def rnn_overrides(model: Path) -> list[str]:
    return ["task=custom", f"task.weights={model}:rnn.weight_hh_l0", f"task.input_matrix={model}:rnn.weight_ih_l0",
            f"task.bias=[{model}:rnn.bias_ih_l0,{model}:rnn.bias_hh_l0]", "task.activation=tanh", "task.tau=5.0"]


def test_a_torch_rnn_state_dict_gives_the_fixed_points_of_its_discrete_time_map(tmp_path):
    model = trained_rnn_files(tmp_path)
    task = build_task(compose_config(tmp_path, rnn_overrides(model)).task)
    state = torch.load(model, weights_only=True)
    w, m = state["rnn.weight_hh_l0"].double(), state["rnn.weight_ih_l0"].double()
    b = (state["rnn.bias_ih_l0"] + state["rnn.bias_hh_l0"]).double()
    u = torch.rand(32, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 2 - 1
    result = solve(task.network, u)
    assert result.status == ["converged"] * 32
    # x <- (1 - alpha) x + alpha (W f(x) + W_in u + b) from rest, alpha = dt / tau = 0.2
    x = torch.zeros(32, 16, dtype=torch.float64)
    for _ in range(3000):
        x = 0.8 * x + 0.2 * (torch.tanh(x) @ w.T + u @ m.T + b)
    assert torch.allclose(result.states, x, atol=1e-10, rtol=0)
    # torch.nn.RNN itself (the rate form, alpha = 1), run on the constant input, ends at r = f(x*)
    rnn = torch.nn.RNN(3, 16, nonlinearity="tanh").double()
    rnn.load_state_dict({name.removeprefix("rnn."): value.double() for name, value in state.items()})
    with torch.no_grad():
        _, hidden = rnn(u.unsqueeze(0).expand(400, -1, -1))
    assert torch.allclose(result.rates, hidden[0], atol=1e-10, rtol=0)


@pytest.mark.parametrize("source, message", [
    (":rnn.nope", "has no entry 'rnn.nope'; it holds rnn.weight_ih_l0, rnn.weight_hh_l0"),
    ("", "holds several arrays (rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0); name one as"),
    (":rnn.bias_hh_l0", "must hold a square N x N matrix, got shape (16,)"),
])
def test_a_state_dict_entry_that_is_missing_or_wrong_is_named(tmp_path, source, message):
    model = trained_rnn_files(tmp_path)
    overrides = [f"task.weights={model}{source}" if item.startswith("task.weights") else item
                 for item in rnn_overrides(model)]
    with pytest.raises(TaskConfigError, match="task.weights") as error:
        build_task(compose_config(tmp_path, overrides).task)
    assert message in str(error.value)


def test_nested_state_dicts_and_npz_entries_are_read(tmp_path):
    w = 0.1 * torch.randn(4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.save({"epoch": 3, "state_dict": {"rnn.w": w}}, tmp_path / "lightning.ckpt.pt")
    np.savez(tmp_path / "net.npz", w=w.numpy(), tau=np.full(4, 2.0))
    for weights, tau in ((f"{tmp_path}/lightning.ckpt.pt:state_dict/rnn.w", 1.0),
                         (f"{tmp_path}/net.npz:w", f"{tmp_path}/net.npz:tau")):
        task = build_task(compose_config(tmp_path, ["task=custom", f"task.weights={weights}", f"task.tau={tau}"]).task)
        assert torch.equal(task.network.weights, w)


def write_input_files(folder: Path, rows: int = 300) -> np.ndarray:
    """An input set such as a trained network sees: fixation 0 or 1, and evidence at a few coherences
    with each trial's noise (every row distinct)."""
    rng = np.random.default_rng(0)
    coherence = rng.choice([-0.5, -0.2, 0.0, 0.2, 0.5], rows)
    noise = 0.05 * rng.standard_normal((rows, 2))
    inputs = np.stack([rng.integers(0, 2, rows), (1 + coherence) / 2 + noise[:, 0], (1 - coherence) / 2 + noise[:, 1]],
                      1).astype(np.float64)
    np.save(folder / "U.npy", inputs)
    np.savez(folder / "splits.npz", train=inputs[:200], val=inputs[200:250], test=inputs[250:])
    torch.save({"train": torch.from_numpy(inputs[:200]), "val": torch.from_numpy(inputs[200:250]),
                "test": torch.from_numpy(inputs[250:])}, folder / "splits.pt")
    return inputs


SIZES = ["data.n_train=96", "data.n_val=32", "data.n_test=32"]


def test_splits_are_drawn_from_an_input_file_without_replacement(tmp_path):
    model, inputs = trained_rnn_files(tmp_path), write_input_files(tmp_path)
    cfg = compose_config(tmp_path, [*rnn_overrides(model), f"task.inputs.file={tmp_path}/U.npy", *TINY_RUN])
    task = build_task(cfg.task)
    sizes = {"train": 96, "val": 32, "test": 32}
    drawn, _ = draw_inputs(task, sizes, seed=0)
    rows = {tuple(row) for row in inputs.tolist()}
    assert all(tuple(row) in rows for row in drawn.tolist())
    index = [np.flatnonzero((inputs == row).all(1)) for row in drawn.numpy()]
    chosen = [int(i[0]) for i in index]
    assert len(set(chosen)) == 160  # no row twice: the splits are disjoint
    assert torch.equal(draw_inputs(task, sizes, seed=0)[0], drawn)  # seeded
    assert not torch.equal(draw_inputs(task, sizes, seed=1)[0], drawn)
    data = load_or_generate(cfg, task, torch.device("cpu"))
    for split, where in split_slices(sizes).items():
        assert torch.equal(getattr(data, split).inputs, drawn[where])


def test_splits_given_in_a_file_are_taken_as_given(tmp_path):
    model, inputs = trained_rnn_files(tmp_path), write_input_files(tmp_path)
    for file in ("splits.npz", "splits.pt"):
        task = build_task(compose_config(tmp_path, [*rnn_overrides(model), f"task.inputs.file={tmp_path}/{file}"]).task)
        drawn, _ = draw_inputs(task, {"train": 200, "val": 50, "test": 50}, seed=0)
        # LAYOUT puts val, then test, then train; each split whole, in the file's order
        assert np.array_equal(drawn.numpy(), np.concatenate([inputs[200:250], inputs[250:], inputs[:200]]))
        fewer, _ = draw_inputs(task, {"train": 100, "val": 50, "test": 10}, seed=0)
        test_rows = fewer[50:60].numpy()
        assert all(any((row == held).all() for held in inputs[250:]) for row in test_rows)


def test_an_input_file_too_small_for_the_sizes_names_both_numbers_unless_replace_is_set(tmp_path):
    model, _ = trained_rnn_files(tmp_path), write_input_files(tmp_path)
    base = [*rnn_overrides(model), *TINY_RUN, "data.n_train=400"]
    cfg = compose_config(tmp_path, [*base, f"task.inputs.file={tmp_path}/U.npy"])
    with pytest.raises(TaskConfigError, match=r"holds 300 inputs, fewer than data.n_val=32 \+ data.n_test=32 \+ "
                                              r"data.n_train=400 ask for; .*task.inputs.replace=true"):
        train(cfg)
    cfg = compose_config(tmp_path, [*base, f"task.inputs.file={tmp_path}/splits.npz"])
    with pytest.raises(TaskConfigError, match="holds 200 train inputs, fewer than data.n_train=400"):
        train(cfg)
    task = build_task(compose_config(tmp_path, [*base, f"task.inputs.file={tmp_path}/U.npy",
                                                "task.inputs.replace=true"]).task)
    drawn, _ = draw_inputs(task, {"train": 400, "val": 32, "test": 32}, seed=0)
    assert len(drawn) == 464 and len(drawn.unique(dim=0)) < 300  # rows repeat


@pytest.mark.parametrize("content, message", [
    (np.zeros(5), r"must hold an n x D array of inputs, got shape \(5,\)"),
    (np.array([[0.0, np.nan, 1.0]]), r"has non-finite entries \(nan or inf\), 1 of 3"),
    (np.zeros((4, 2)), r"holds inputs of shape \(4, 2\), but the network's input matrix takes D=3 inputs"),
])
def test_a_bad_input_file_is_one_line_naming_the_key_the_file_and_the_shape(tmp_path, content, message):
    model = trained_rnn_files(tmp_path)
    np.save(tmp_path / "bad.npy", content)
    result = run_script(["train.py", *rnn_overrides(model), f"task.inputs.file={tmp_path}/bad.npy",
                         f"paths.log_dir={tmp_path}/out", f"data.cache_dir={tmp_path}/cache"], check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    line, = result.stderr.strip().splitlines()
    assert line.startswith(f"error: task.inputs.file: {tmp_path}/bad.npy")
    assert re.search(message, line)


def test_an_edited_input_file_is_a_new_dataset_and_a_moved_one_is_not(tmp_path):
    model, inputs = trained_rnn_files(tmp_path), write_input_files(tmp_path)
    base = [*rnn_overrides(model), *TINY_RUN]
    first = load_or_generate(compose_config(tmp_path, [*base, f"task.inputs.file={tmp_path}/U.npy"]),
                             build_task(compose_config(tmp_path, [*base, f"task.inputs.file={tmp_path}/U.npy"]).task),
                             torch.device("cpu"))
    (tmp_path / "moved").mkdir()
    np.save(tmp_path / "moved" / "U.npy", inputs)
    cfg = compose_config(tmp_path, [*base, f"task.inputs.file={tmp_path}/moved/U.npy"])
    assert load_or_generate(cfg, build_task(cfg.task), torch.device("cpu")).path == first.path
    inputs[0, 1] += 0.01
    np.save(tmp_path / "U.npy", inputs)
    cfg = compose_config(tmp_path, [*base, f"task.inputs.file={tmp_path}/U.npy"])
    assert load_or_generate(cfg, build_task(cfg.task), torch.device("cpu")).path != first.path


def test_distribution_parameters_per_input_channel(tmp_path):
    model = trained_rnn_files(tmp_path)
    task = build_task(compose_config(tmp_path, [*rnn_overrides(model), "task.inputs.low=[0,0,-1]",
                                                "task.inputs.high=[1,0.5,1]"]).task)
    inputs, _ = task.sample(4096, torch.Generator().manual_seed(0))
    assert inputs.amin(0).tolist() == pytest.approx([0, 0, -1], abs=0.01)
    assert inputs.amax(0).tolist() == pytest.approx([1, 0.5, 1], abs=0.01)
    for bad in ("task.inputs.low=[0,1]", "task.inputs.high=[1,0,1]"):
        with pytest.raises(TaskConfigError, match=bad.split("=")[0].removeprefix("task.")):
            build_task(compose_config(tmp_path, [*rnn_overrides(model), bad]).task)


def test_dale_populations_are_inferred_and_declared_ones_reported(tmp_path):
    network = random_ei_network(40, spectral_radius=0.5, seed=0)
    np.save(tmp_path / "W.npy", network.weights.numpy())
    task = build_task(compose_config(tmp_path, ["task=custom", f"task.weights={tmp_path}/W.npy"]).task)
    assert {name: len(units) for name, units in task.populations().items()} == {"excitatory": 32, "inhibitory": 8}
    assert task.headline_metrics == ("rel_error_excitatory",)
    cfg = compose_config(tmp_path, ["task=custom", f"task.weights={tmp_path}/W.npy", *TINY_RUN,
                                    'task.populations={first: "0:10", rest: "10:40"}'])
    metrics = train(cfg)
    assert {"test/rel_error_first", "test/rel_error_rest"} <= set(metrics)
    mixed = network.weights.clone()
    mixed[0, 35] = 0.1  # an inhibitory unit with one excitatory synapse: Dale's law broken
    np.save(tmp_path / "W.npy", mixed.numpy())
    task = build_task(compose_config(tmp_path, ["task=custom", f"task.weights={tmp_path}/W.npy"]).task)
    assert list(task.populations()) == ["units"]
    for bad, message in (('{a: "0:30", b: "20:40"}', "must not share units"), ('{a: "0:41"}', "stop <= 40"),
                         ("{a: [1, 1]}", "twice")):
        with pytest.raises(TaskConfigError, match=message):
            build_task(compose_config(tmp_path, ["task=custom", f"task.weights={tmp_path}/W.npy",
                                                 f"task.populations={bad}"]).task)


def test_from_network_takes_an_input_set_and_the_checkpoint_carries_it(tmp_path):
    network = random_ei_network(20, spectral_radius=0.5, seed=1)
    inputs = write_input_files(tmp_path)
    network = type(network)(network.weights, network.tau, torch.rand(20, 3, dtype=torch.float64), network.bias)
    for given in (torch.from_numpy(inputs), tmp_path / "U.npy", str(tmp_path / "splits.npz")):
        task = CustomTask.from_network(network, inputs=given)
        assert task.input_set is not None and task.input_set.width == 3
    task = CustomTask.from_network(network, inputs={"train": torch.from_numpy(inputs[:200]),
                                                    "val": torch.from_numpy(inputs[200:250]),
                                                    "test": torch.from_numpy(inputs[250:])})
    cfg = compose_config(tmp_path, [*TINY_RUN, "trainer.max_epochs=2"])
    metrics = train(cfg, task)
    assert metrics["data/converged"] == 160
    best = Path(cfg.paths.output_dir) / "checkpoints" / "best.pt"
    result = run_script(["scripts/evaluate.py", f"checkpoint={best}", "n_samples=20", "device=cpu"])
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["data/converged"] == 20
    result = run_script(["scripts/evaluate.py", f"checkpoint={best}", f"inputs={tmp_path}/splits.npz", "device=cpu"])
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["n_samples"] == 50 and report["data/converged"] == 50  # the file's test split, all of it
    np.save(tmp_path / "wide.npy", np.zeros((4, 5)))
    result = run_script(["scripts/evaluate.py", f"checkpoint={best}", f"inputs={tmp_path}/wide.npy"], check=False)
    assert result.returncode == 1 and result.stderr.strip() == (
        f"error: inputs: {tmp_path}/wide.npy holds inputs of shape (4, 5), but the network's input matrix takes D=3 "
        "inputs")


def test_the_decision_rnn_example_trains_saves_and_its_printed_command_fits_the_ff(tmp_path):
    result = run_script(["scripts/examples/train_decision_rnn.py", "--steps", "20", "--trials", "64",
                         "--out", str(tmp_path / "example")])
    state = torch.load(tmp_path / "example" / "model.pt", weights_only=True)
    w = state["weight_hh"]
    assert w.shape == (100, 100) and (w[:, :80] >= 0).all() and (w[:, 80:] <= 0).all()  # Dale's law kept
    command = result.stdout.strip().splitlines()[-1].split()
    assert command[:3] == ["python", "train.py", "task=custom"]
    run = run_script([*command[1:], f"paths.log_dir={tmp_path}/out", f"data.cache_dir={tmp_path}/cache",
                      "trainer.max_epochs=2", "model.hidden=16", "solver.progress=false", "trainer.progress=false"])
    assert "96 train" in result.stdout and "rel_error_excitatory" in run.stderr + run.stdout
    metrics = json.loads(next((tmp_path / "out").glob("runs/custom/*/metrics.json")).read_text())
    assert metrics["data/converged"] > 100 and "test/rel_error_inhibitory" in metrics


def test_a_large_input_set_is_checkpointed_by_its_file_and_digest(tmp_path, monkeypatch):
    monkeypatch.setattr(custom, "STORED_INPUT_BYTES", 0)
    model, inputs = trained_rnn_files(tmp_path), write_input_files(tmp_path)
    cfg = compose_config(tmp_path, [*rnn_overrides(model), f"task.inputs.file={tmp_path}/U.npy", *TINY_RUN,
                                    "trainer.max_epochs=1"])
    train(cfg)
    checkpoint = load_checkpoint(Path(cfg.paths.output_dir) / "checkpoints" / "best.pt")
    assert "input_set" not in checkpoint["task_files"]
    assert torch.equal(task_from(checkpoint).input_set.arrays["inputs"], torch.from_numpy(inputs))
    inputs[0, 0] = 0.5
    np.save(tmp_path / "U.npy", inputs)
    with pytest.raises(TaskConfigError, match="has changed since the checkpoint was written"):
        task_from(checkpoint)
