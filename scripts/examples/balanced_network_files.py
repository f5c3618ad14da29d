"""Write a 1,000-unit balanced E/I network as the files a user brings, and print the command that fits it.

    python scripts/examples/balanced_network_files.py [--out outputs/examples/balanced] [task.<key>=<value> ...]

The network is task=balanced's (rnn_ff/tasks/balanced.py: 800 E and 200 I threshold-linear units with
Dale's law, the rate model of the spiking network in Rosenbaum 2024, its coupling scaled by 0.8 so that
it settles); any of its config keys can be changed (`task.coupling_scale=0.9`, `task.n_pathways=800`).
Writes W.npy (N x N), tau.npy (N, ms), M.npy (N x D) and b.npy (N,), numpy's own format, which is what a
user's network usually arrives as, and prints the `python train.py task=custom ...` command (the inputs
are the pathways' rates, uniform on the task's input_low..input_high Hz).
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

import numpy as np

from rnn_ff.config import PROJECT_ROOT
from rnn_ff.tasks.balanced import BalancedConfig, BalancedTask
from rnn_ff.tasks.base import TaskConfigError


def config_from(overrides: list[str]) -> BalancedConfig:
    """BalancedConfig with `task.<key>=<value>` overrides, each value of its field's type."""
    types = {f.name: type(f.default) for f in fields(BalancedConfig) if f.name != "name"}
    values = {}
    for override in overrides:
        key, separator, value = override.partition("=")
        key = key.removeprefix("task.")
        if not separator or key not in types:
            raise SystemExit(f"error: {override!r} is not task.<key>=<value> with a key of {sorted(types)}")
        try:
            values[key] = types[key](value)
        except ValueError:
            raise SystemExit(f"error: {override!r}: task.{key} takes a {types[key].__name__}") from None
    return BalancedConfig(**values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "outputs" / "examples" / "balanced")
    parser.add_argument("overrides", nargs="*", help="task.<key>=<value> (BalancedConfig's keys)")
    args = parser.parse_args()
    cfg = config_from(args.overrides)
    try:
        network = BalancedTask(cfg).network
    except TaskConfigError as error:
        raise SystemExit(f"error: {error}") from None
    args.out.mkdir(parents=True, exist_ok=True)
    paths = {name: args.out / f"{name}.npy" for name in ("W", "tau", "M", "b")}
    for name, tensor in zip(paths, (network.weights, network.tau, network.input_matrix, network.bias)):
        np.save(paths[name], tensor.numpy())
    print(f"wrote a {network.n_units}-unit network with {network.n_inputs} inputs to {args.out}; fit the FF with:")
    print(f"python train.py task=custom task.weights={paths['W']} task.tau={paths['tau']} "
          f"task.input_matrix={paths['M']} task.bias={paths['b']} task.inputs.low={cfg.input_low:g} "
          f"task.inputs.high={cfg.input_high:g}")


if __name__ == "__main__":
    main()
