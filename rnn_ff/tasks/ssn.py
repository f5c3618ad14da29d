"""A two-population stabilized supralinear network (SSN) in its inhibition-stabilized regime.

    tau_E dx_E/dt = -x_E + W_EE r_E - W_EI r_I + h_E ,   tau_I dx_I/dt = -x_I + W_IE r_E - W_II r_I + h_I
    r = k [x]_+^n

Defaults: Hennequin, Ahmadian, Rubin, Lengyel & Miller (2018), "The dynamical regime of sensory
cortex", Neuron 98:846, Fig. 2 (their code: github.com/ghennequin/neuron2018, generic_prms.ml):
k = 0.3, n = 2, W_EE 1.25, W_EI 0.65, W_IE 1.2, W_II 0.5 (mV s), tau_E 20 ms, tau_I 10 ms, drives
h of 0-20 mV; time is in seconds, rates in Hz. The network is an ISN (the E subnetwork alone
unstable at the fixed point: W_EE n k^(1/n) r_E^((n-1)/n) > 1) from h of about 1 mV: there, more
drive to I lowers I's rate (the paradoxical response; tests/test_smooth_networks.py). Its
input-output curve is supralinear at weak drive and sublinear at strong drive (Ahmadian, Rubin &
Miller 2013, Neural Computation 25:1994). Inputs: (h_E, h_I), each uniform on [input_low, input_high].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rnn_ff.network import RecurrentNetwork
from rnn_ff.tasks.base import ExcitatoryInhibitoryPair, Labels, require, require_finite


@dataclass
class SSNConfig:
    name: str = "ssn"
    k: float = 0.3  # gain of r = k [x]_+^n (Hennequin et al. 2018)
    n: float = 2.0  # exponent: supralinear
    w_ee: float = 1.25  # E -> E
    w_ei: float = 0.65  # I -> E (inhibitory: enters with a minus sign)
    w_ie: float = 1.2  # E -> I
    w_ii: float = 0.5  # I -> I (inhibitory)
    tau_excitatory: float = 0.02  # seconds
    tau_inhibitory: float = 0.01
    input_low: float = 0.0  # drives h_E, h_I ~ uniform [input_low, input_high] (mV)
    input_high: float = 20.0


def ssn_network(cfg: SSNConfig) -> RecurrentNetwork:
    weights = torch.tensor([[cfg.w_ee, -cfg.w_ei], [cfg.w_ie, -cfg.w_ii]], dtype=torch.float64)
    tau = torch.tensor([cfg.tau_excitatory, cfg.tau_inhibitory], dtype=torch.float64)
    return RecurrentNetwork(weights, tau, torch.eye(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64),
                            "power", {"k": cfg.k, "n": cfg.n})


class SSNTask(ExcitatoryInhibitoryPair):
    name = "ssn"
    headline_metrics = ("rel_error_excitatory", "isn_agreement")
    hardness = {"input_high": (5.0, 10.0, 20.0, 40.0)}  # stronger drive: deeper into the ISN regime

    def __init__(self, cfg: SSNConfig, network: RecurrentNetwork | None = None) -> None:
        require_finite(cfg, ("k", "n", "w_ee", "w_ei", "w_ie", "w_ii", "tau_excitatory", "tau_inhibitory",
                             "input_low", "input_high"))
        require(cfg.k > 0, "k", cfg.k, "must be > 0")
        require(cfg.n >= 1, "n", cfg.n, "must be >= 1")
        for key in ("tau_excitatory", "tau_inhibitory"):
            require(getattr(cfg, key) > 0, key, getattr(cfg, key), "must be > 0")
        require(cfg.input_low < cfg.input_high, "input_low", cfg.input_low, f"must be < input_high={cfg.input_high}")
        self.cfg = cfg
        self.network = network or ssn_network(cfg)

    def isn(self, rates: torch.Tensor) -> torch.Tensor:
        """Inhibition-stabilized at these rates: the E subnetwork alone would be unstable there."""
        cfg = self.cfg
        return cfg.w_ee * cfg.n * cfg.k ** (1 / cfg.n) * rates[:, 0].clamp_min(0) ** ((cfg.n - 1) / cfg.n) > 1

    def metrics(self, inputs: torch.Tensor, labels: Labels, predicted: torch.Tensor,
                target: torch.Tensor) -> dict[str, torch.Tensor]:
        return {**super().metrics(inputs, labels, predicted, target),
                "isn_fraction": self.isn(target).double().mean(),
                # the FF puts each input in the same regime (ISN or not) as the recurrent network
                "isn_agreement": (self.isn(predicted) == self.isn(target)).double().mean()}
