"""Rate functions r = f(x) of the recurrent networks, each with what the solver needs from it:
f, its slope f' (the Jacobian) and, for smooth ones, a bound on how fast f' changes over an
interval (the smooth certificate's remainder bound).

- relu      max(x, 0): piecewise linear, solved exactly region by region.
- tanh      tanh(x).
- power     k [x]_+^n (n >= 1): the stabilized supralinear network (SSN; Ahmadian, Rubin & Miller
            2013, typically n = 2).
- sigmoid   1 / (1 + exp(-gain (x - threshold))) - 1 / (1 + exp(gain threshold)): the logistic of
            Wilson & Cowan (1972), shifted so that f(0) = 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

Params = dict[str, float]


class ActivationError(ValueError):
    """An activation name or parameter that describes no rate function; the message names it."""


@dataclass(frozen=True)
class Activation:
    rate: Callable[[torch.Tensor, Params], torch.Tensor]
    slope: Callable[[torch.Tensor, Params], torch.Tensor]
    # Lipschitz constant of f' on [low, high] (elementwise); None: piecewise linear (no certificate needs it)
    curvature: Callable[[torch.Tensor, torch.Tensor, Params], torch.Tensor] | None
    defaults: Params
    nonnegative: bool  # f(x) >= 0 everywhere
    # parameter -> (is the value allowed, what is allowed)
    allowed: dict[str, tuple[Callable[[float], bool], str]]
    # The largest slope s with 0 <= f' <= s everywhere (inf: unbounded). f is then in the sector
    # [0, s] about every point, which is what the global stability proof needs (solver/global_stability.py).
    slope_bound: Callable[[Params], float] = lambda p: math.inf


def _logistic(x: torch.Tensor, p: Params) -> torch.Tensor:
    return torch.sigmoid(p["gain"] * (x - p["threshold"]))


def _power_curvature(low: torch.Tensor, high: torch.Tensor, p: Params) -> torch.Tensor:
    """f'' = k n (n - 1) x^(n - 2) on x > 0 and 0 below: the Lipschitz constant of f' on [low, high].
    An interval that reaches the kink at 0 has a finite one only for n >= 2."""
    k, n = p["k"], p["n"]
    if n == 1:  # k relu: linear on each side of 0
        return torch.where((low <= 0) & (high > 0), math.inf, 0.0)
    if n >= 2:  # f'' grows with x
        return torch.where(high > 0, k * n * (n - 1) * high.clamp_min(0) ** (n - 2), 0.0)
    falling = k * n * (n - 1) * low.clamp_min(1e-300) ** (n - 2)  # 1 < n < 2: f'' falls with x
    return torch.where(high <= 0, 0.0, torch.where(low > 0, falling, math.inf))


_POSITIVE = (lambda v: math.isfinite(v) and v > 0, "must be a finite number > 0")
ACTIVATIONS: dict[str, Activation] = {
    "relu": Activation(lambda x, p: torch.relu(x), lambda x, p: (x > 0).to(x.dtype), None, {}, True, {},
                       lambda p: 1.0),
    "tanh": Activation(lambda x, p: torch.tanh(x), lambda x, p: 1.0 - torch.tanh(x) ** 2,
                       lambda low, high, p: torch.full_like(low, 4 / (3 * math.sqrt(3))), {}, False, {},
                       lambda p: 1.0),
    "power": Activation(
        lambda x, p: p["k"] * torch.relu(x) ** p["n"],
        lambda x, p: p["k"] * p["n"] * torch.relu(x) ** (p["n"] - 1) * (x > 0).to(x.dtype),
        _power_curvature, {"k": 1.0, "n": 2.0}, True,
        {"k": _POSITIVE, "n": (lambda v: math.isfinite(v) and v >= 1, "must be a finite number >= 1")},
        lambda p: p["k"] if p["n"] == 1 else math.inf),
    "sigmoid": Activation(
        lambda x, p: _logistic(x, p) - 1.0 / (1.0 + math.exp(p["gain"] * p["threshold"])),
        lambda x, p: p["gain"] * _logistic(x, p) * (1 - _logistic(x, p)),
        lambda low, high, p: torch.full_like(low, p["gain"] ** 2 / (6 * math.sqrt(3))),
        {"gain": 1.0, "threshold": 0.0}, False,
        {"gain": _POSITIVE, "threshold": (math.isfinite, "must be a finite number")},
        lambda p: p["gain"] / 4),
}


def activation_params(name: str, given: Params | None, prefix: str = "") -> Params:
    """The activation's full parameters (its defaults updated by `given`), checked: an unknown name
    or parameter, or a value outside its range, raises ActivationError naming `prefix`key."""
    if name not in ACTIVATIONS:
        raise ActivationError(f"{prefix}activation={name!r} is unknown; allowed: {sorted(ACTIVATIONS)}")
    activation, given = ACTIVATIONS[name], dict(given or {})
    unknown = sorted(set(given) - set(activation.defaults))
    if unknown:
        raise ActivationError(f"{prefix}activation_params.{unknown[0]} is not a parameter of {name!r}; "
                              f"its parameters: {sorted(activation.defaults) or 'none'}")
    params = {**activation.defaults, **{key: float(value) for key, value in given.items()}}
    for key, (ok, allowed) in activation.allowed.items():
        if not ok(params[key]):
            raise ActivationError(f"{prefix}activation_params.{key}={params[key]!r} is invalid: {allowed}")
    return params
