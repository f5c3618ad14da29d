"""A Wilson-Cowan E/I pair over drives that give a stable fixed point or a limit cycle.

    tau_E dr_E/dt = -r_E + F_E(w_EE r_E - w_EI r_I + I_E) ,  tau_I dr_I/dt = -r_I + F_I(w_IE r_E - w_II r_I + I_I)
    F_p(u) = S(a_p (u - theta_p)) - S(-a_p theta_p),  S the logistic

Defaults: the limit-cycle parameter set of Neuromatch Academy's Wilson-Cowan tutorial (W2D4,
after Wilson & Cowan 1972, Biophys. J. 12:1): tau_E 1, a_E 1.2, theta_E 2.8, tau_I 2, a_I 1,
theta_I 4, w_EE 6.4, w_EI 4.8, w_IE 6, w_II 1.2. Reproduced numerically (tests/test_smooth_networks.py):
I_E between about 0.71 and 1.02 (with I_I = 0) gives a limit cycle (`oscillating`, never a target),
other drives a stable fixed point. Inputs: I_E uniform on [input_low, input_high], I_I = 0.

rnn_ff integrates the equivalent form with x = W r + I (same fixed points and, for two
populations, the same stability) in y_p = a_p (x_p - theta_p), where every unit has one rate
function S(y) - 1/2 (rnn_ff's sigmoid with gain 1, threshold 0): weights a_p w, bias and input
scale carry the rest. The targets are those rates; Wilson-Cowan's r_p = target_p + 1/2 - S(-a_p theta_p).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rnn_ff.network import RecurrentNetwork
from rnn_ff.tasks.base import ExcitatoryInhibitoryPair, require, require_finite


@dataclass
class WilsonCowanConfig:
    name: str = "wilson_cowan"
    w_ee: float = 6.4  # E -> E (Neuromatch W2D4, limit-cycle set)
    w_ei: float = 4.8  # I -> E (inhibitory: enters with a minus sign)
    w_ie: float = 6.0  # E -> I
    w_ii: float = 1.2  # I -> I (inhibitory)
    gain_excitatory: float = 1.2  # a_E
    threshold_excitatory: float = 2.8  # theta_E
    gain_inhibitory: float = 1.0  # a_I
    threshold_inhibitory: float = 4.0  # theta_I
    tau_excitatory: float = 1.0  # the unit of time
    tau_inhibitory: float = 2.0  # slow inhibition: needed for the limit cycle
    input_low: float = 0.0  # drive I_E ~ uniform [input_low, input_high]; fixed point below ~0.71 and above ~1.02
    input_high: float = 1.5


def wilson_cowan_network(cfg: WilsonCowanConfig) -> RecurrentNetwork:
    weights = torch.tensor([[cfg.w_ee, -cfg.w_ei], [cfg.w_ie, -cfg.w_ii]], dtype=torch.float64)
    gain = torch.tensor([cfg.gain_excitatory, cfg.gain_inhibitory], dtype=torch.float64)
    threshold = torch.tensor([cfg.threshold_excitatory, cfg.threshold_inhibitory], dtype=torch.float64)
    offset = torch.sigmoid(-gain * threshold)  # S(-a theta): F(0) = 0
    bias = -gain * threshold + gain * (weights @ (0.5 - offset))
    tau = torch.tensor([cfg.tau_excitatory, cfg.tau_inhibitory], dtype=torch.float64)
    input_matrix = torch.tensor([[cfg.gain_excitatory], [0.0]], dtype=torch.float64)  # I_E enters as a_E I_E
    return RecurrentNetwork(gain[:, None] * weights, tau, input_matrix, bias, "sigmoid", {"gain": 1.0, "threshold": 0.0})


class WilsonCowanTask(ExcitatoryInhibitoryPair):
    name = "wilson_cowan"
    headline_metrics = ("rel_error_excitatory",)
    hardness = {"input_high": (0.6, 1.0, 1.5, 2.5)}  # past ~0.71 the drives cross the limit-cycle range
    n_drives = 1  # I_E; I_I = 0

    def __init__(self, cfg: WilsonCowanConfig, network: RecurrentNetwork | None = None) -> None:
        keys = ("w_ee", "w_ei", "w_ie", "w_ii", "gain_excitatory", "threshold_excitatory", "gain_inhibitory",
                "threshold_inhibitory", "tau_excitatory", "tau_inhibitory", "input_low", "input_high")
        require_finite(cfg, keys)
        for key in ("gain_excitatory", "gain_inhibitory", "tau_excitatory", "tau_inhibitory"):
            require(getattr(cfg, key) > 0, key, getattr(cfg, key), "must be > 0")
        require(cfg.input_low < cfg.input_high, "input_low", cfg.input_low, f"must be < input_high={cfg.input_high}")
        self.cfg = cfg
        self.network = network or wilson_cowan_network(cfg)
