"""Train a rate RNN on a perceptual decision, in plain PyTorch, and save what rnn_ff reads.

    python scripts/examples/train_decision_rnn.py [--out outputs/examples/decision_rnn] [--steps 1500]

A continuous-time rate RNN with Dale's law (80 excitatory, 20 inhibitory ReLU units, as in
Song, Yang & Wang 2016, PLoS Comput Biol 12:e1004792), discretised as
x <- (1 - alpha) x + alpha (W relu(x) + W_in u + b) with dt = 20 ms, tau = 100 ms (alpha = 0.2),
learns a two-alternative random-dots task: hold fixation while noisy evidence for one of two
choices arrives on two channels, then report the stronger one when the fixation cue goes off
(the evidence stays on). Dale's law is kept by projection after every step, so the state_dict
holds the effective weights. Writes:

- model.pt: the state_dict (weight_hh: W, weight_ih: W_in, bias: b, readout.*), torch.save;
- inputs.npz: the constant inputs the network sees, one row per trial and epoch (fixation 1
  or 0, each evidence channel's mean over the epoch), split by trial into train, val and test;

and prints the `python train.py task=custom ...` command that fits the FF to it.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from rnn_ff.config import PROJECT_ROOT

DT, TAU = 20.0, 100.0  # ms
ALPHA = DT / TAU
COHERENCES = (0.0, 0.032, 0.064, 0.128, 0.256, 0.512)
FIXATION_STEPS, STIMULUS_STEPS, RESPONSE_STEPS = 15, 35, 15  # 300, 700, 300 ms
INPUT_NOISE = 0.1  # per step, on each evidence channel
RECURRENT_NOISE = 0.05


class RateRNN(nn.Module):
    """x <- (1 - alpha) x + alpha (W relu(x) + W_in u + b), read out from the excitatory rates."""

    def __init__(self, n_units: int = 100, n_excitatory: int = 80, n_inputs: int = 3, n_outputs: int = 3,
                 seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.n_excitatory = n_excitatory
        sign = torch.ones(n_units)
        sign[n_excitatory:] = -n_excitatory / (n_units - n_excitatory)  # balanced at initialisation
        weights = torch.rand(n_units, n_units, generator=generator) * sign / math.sqrt(n_units)
        weights *= 1.5 / torch.linalg.eigvals(weights).abs().max()
        self.register_buffer("column_sign", sign.sign())
        self.weight_hh = nn.Parameter(weights)
        self.weight_ih = nn.Parameter(torch.rand(n_units, n_inputs, generator=generator))
        self.bias = nn.Parameter(torch.zeros(n_units))
        self.readout = nn.Linear(n_excitatory, n_outputs)

    def keep_dale(self) -> None:
        """Project back onto Dale's law: unit j's outgoing weights (column j) keep its sign."""
        with torch.no_grad():
            self.weight_hh.mul_(self.weight_hh * self.column_sign >= 0)

    def forward(self, inputs: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """inputs (T, B, D) -> outputs (T, B, 3) and rates (T, B, N)."""
        x = torch.zeros(inputs.shape[1], self.weight_hh.shape[0])
        rates = []
        for u in inputs:
            noise = torch.randn(x.shape, generator=generator) * RECURRENT_NOISE * math.sqrt(2 / ALPHA)
            x = (1 - ALPHA) * x + ALPHA * (torch.relu(x) @ self.weight_hh.T + u @ self.weight_ih.T + self.bias + noise)
            rates.append(torch.relu(x))
        rates = torch.stack(rates)
        return self.readout(rates[..., :self.n_excitatory]), rates


def trials(batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inputs (T, B, 3), targets (T, B: 0 fixate, 1 or 2 the choice) and each trial's signed coherence."""
    steps = FIXATION_STEPS + STIMULUS_STEPS + RESPONSE_STEPS
    coherence = torch.tensor(COHERENCES)[torch.randint(len(COHERENCES), (batch,), generator=generator)]
    choice = torch.randint(2, (batch,), generator=generator)
    signed = torch.where(choice == 0, coherence, -coherence)
    inputs = torch.zeros(steps, batch, 3)
    inputs[:FIXATION_STEPS + STIMULUS_STEPS, :, 0] = 1.0
    evidence = torch.stack([(1 + signed) / 2, (1 - signed) / 2], 1)
    inputs[FIXATION_STEPS:, :, 1:] = evidence + INPUT_NOISE * torch.randn(steps - FIXATION_STEPS, batch, 2,
                                                                          generator=generator)
    targets = torch.zeros(steps, batch, dtype=torch.long)
    targets[FIXATION_STEPS + STIMULUS_STEPS:] = 1 + choice
    return inputs, targets, signed


def train_network(steps: int, seed: int) -> RateRNN:
    torch.manual_seed(seed)
    model = RateRNN(seed=seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for step in range(1, steps + 1):
        inputs, targets, _ = trials(64, generator)
        outputs, rates = model(inputs, generator)
        weight = torch.ones(targets.shape)
        weight[FIXATION_STEPS + STIMULUS_STEPS:] = 5.0  # the choice counts most
        loss = (nn.functional.cross_entropy(outputs.flatten(0, 1), targets.flatten(), reduction="none")
                * weight.flatten()).mean() + 1e-2 * rates.pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        model.keep_dale()
        if step % 250 == 0 or step == steps:
            print(f"step {step}: loss {loss.item():.3f}, accuracy {accuracy(model, seed + step):.3f} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
    return model


@torch.no_grad()
def accuracy(model: RateRNN, seed: int, batch: int = 512) -> float:
    """The fraction of trials with a coherence above 0 whose last output picks the right choice."""
    inputs, targets, signed = trials(batch, torch.Generator().manual_seed(seed))
    outputs, _ = model(inputs)
    judged = signed != 0
    return (outputs[-1, :, 1:].argmax(-1) + 1 == targets[-1])[judged].float().mean().item()


def input_set(n_trials: int, seed: int) -> np.ndarray:
    """Each trial's two constant inputs: the stimulus epoch's (fixation 1) and the response epoch's
    (fixation 0), the evidence averaged over the epoch (what the network integrates)."""
    inputs, _, _ = trials(n_trials, torch.Generator().manual_seed(seed))
    stimulus = inputs[FIXATION_STEPS:FIXATION_STEPS + STIMULUS_STEPS].mean(0)
    response = inputs[FIXATION_STEPS + STIMULUS_STEPS:].mean(0)
    return torch.stack([stimulus, response], 1).double().numpy()  # (trials, 2 epochs, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "outputs" / "examples" / "decision_rnn")
    parser.add_argument("--steps", type=int, default=1500, help="optimiser steps (batches of 64 trials)")
    parser.add_argument("--trials", type=int, default=4000, help="trials in the saved input set (2 inputs each)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    args.out.mkdir(parents=True, exist_ok=True)
    model = train_network(args.steps, args.seed)
    torch.save(model.state_dict(), args.out / "model.pt")
    rows = input_set(args.trials, args.seed + 10_000)
    n_val = n_test = args.trials // 8
    np.savez(args.out / "inputs.npz", val=rows[:n_val].reshape(-1, 3), test=rows[n_val:n_val + n_test].reshape(-1, 3),
             train=rows[n_val + n_test:].reshape(-1, 3))
    model_path, inputs_path = args.out / "model.pt", args.out / "inputs.npz"
    print(f"wrote {model_path} and {inputs_path} ({2 * (args.trials - n_val - n_test)} train, {2 * n_val} val, "
          f"{2 * n_test} test inputs); fit the FF with:")
    print(f"python train.py task=custom task.weights={model_path}:weight_hh task.input_matrix={model_path}:weight_ih "
          f"task.bias={model_path}:bias task.tau={TAU:g} task.inputs.file={inputs_path} "
          f"data.n_train={2 * (args.trials - n_val - n_test)} data.n_val={2 * n_val} data.n_test={2 * n_test}")


if __name__ == "__main__":
    main()
