"""One proof per network: a unique, globally asymptotically stable equilibrium for every constant input.

The network is  tau_i x_i' = -x_i + sum_j W_ij f(x_j) + h_i  with f nondecreasing and 0 <= f' <= s
(ReLU and tanh: s = 1; the sigmoid: s = gain / 4; the SSN's power law has no bound: no proof).

Theorem. If a diagonal D > 0 makes  D A + A^T D  positive definite, A = I - s W (A is Lyapunov
diagonally stable), then for every constant h the network has exactly one equilibrium x*, every
trajectory converges to it, whatever the time constants tau_i > 0, and for any state x

    |x - x*|_2 <= |W|_2 |g|_2 + |F(x)|_2 ,   |g|_2 <= s |D F(x)|_2 / m ,   F(x) = -x + W f(x) + h,

with m = lambda_min(D A + A^T D) / 2 > 0 and g = f(x) - f(x*).

Proof (after Forti & Tesi, IEEE TCAS-I 42(7), 1995, written here for a time constant per unit).
For any two states x, x' let y = x - x', g = f(x) - f(x'). The sector condition gives g_i y_i >= g_i^2 / s,
so with H(x) = x - W f(x) - h:

    g^T D (H(x) - H(x')) = g^T D y - g^T D W g >= g^T D (I / s - W) g = g^T D A g / s >= (m / s) |g|^2.   (*)

Uniqueness: H(x) = H(x') gives g = 0 by (*), so y = W g = 0. Existence: by (*) with x' = 0,
|H(x) - H(0)| >= (m / (s |D|)) |g| and |H(x) - H(0)| >= |y| - |W| |g|, so |H(x)| grows at least like
|x|: H is continuous, injective and proper, hence onto (invariance of domain), and H(x*) = 0 has a
solution for every h. (For ReLU this is the linear complementarity problem of the P-matrix A.)
Stability: with y = x - x*, g_i(y_i) = f(x*_i + y_i) - f(x*_i), take the Lur'e-Postnikov function

    V(y) = sum_i d_i tau_i int_0^{y_i} g_i(r) dr  +  eps sum_i tau_i y_i^2 / 2 .

Along trajectories tau_i y_i' = -y_i + (W g)_i, so the first sum changes at the rate
-g^T D y + g^T D W g <= -(m / s) |g|^2 (as in (*)), and the second at eps (-|y|^2 + y^T W g) <=
eps (-|y|^2 / 2 + |W|^2 |g|^2 / 2). With eps = m / (s |W|^2), V' <= -(m / 2s) |g|^2 - eps |y|^2 / 2 < 0
for y != 0, and V >= eps min(tau) |y|^2 / 2 is radially unbounded: x* attracts every trajectory,
in particular the one from rest. The a-posteriori bound is (*) with x' = x*: H(x) = -F(x), so
(m / s) |g|^2 <= |g| |D F(x)|, and y = W g - F(x).

So for a proven network any exact equilibrium is the response from rest: a ReLU sample is converged
as soon as its region's fixed point, solved exactly on its active set, lies in that region. No per
region (or per sample) eigen-analysis or Lyapunov function is needed.

Finding D (a convex but semidefinite problem) is the hard part; what is cheap comes first, and D counts
only once verified (`certified_margin`: a Cholesky factorisation of D A + A^T D - 2m I with every
rounding error bounded):
1. Quick refusals with the reason: a unit with s W_ii >= 1 (A is then not even stable on the
   diagonal), or excitatory units (those whose outgoing weights are all >= 0) that are unstable on
   their own, rho(s W_EE) >= 1 (an inhibition-stabilized or multistable network: the principal
   submatrix A_EE of a diagonally stable A would be a diagonally stable M-matrix, rho < 1).
2. Candidates: D = diag(y / x) from the right and left Perron vectors x, y of W with its
   off-diagonal entries made absolute (if their Perron root is below 1, A is an H-matrix and this D
   is known to work; it often works beyond, e.g. for the soft WTA); the identity; for networks that obey Dale's law, one weight per population,
   d_I / d_E = sum |W_EI| / sum W_IE, which cancels the mean E-I cross terms of D A + A^T D.
3. An ascent on the smallest eigenvalue of D A + A^T D over log D (soft-min gradient), from the
   best candidate, for a number of steps that falls as N^3 grows (each step is one N x N symmetric
   eigen-decomposition).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import torch

from rnn_ff.network import RecurrentNetwork

_ASCENT_WORK = 5e9  # flops of the D search: about 5e9 / N^3 ascent steps (50 at most)
_ASCENT_STEPS = 50
_PERRON_STEPS = 500
_CACHE: dict[str, GlobalProof] = {}  # by network digest: a network's proof is found once per process
_CACHE_SIZE = 8


@dataclass(frozen=True)
class GlobalProof:
    """The outcome of trying to prove global stability: proved, with its D and margin, or the reason not."""

    proved: bool
    method: str  # how D was found (proved) or which test refused the network (not proved)
    reason: str = ""  # why there is no proof
    margin: float = 0.0  # m: lambda_min(D A + A^T D) / 2 >= m, certified, with max(D) = 1
    slope_bound: float = 1.0  # s
    diagonal: torch.Tensor | None = field(default=None, repr=False)  # D (N,), max 1
    weights_norm: float = math.inf  # an upper bound on |W|_2
    # Not proved: the best D found (max 1); where D A + A^T D restricted to a region's active set is
    # positive definite, D still proves that region stable (regions.diagonal_lyapunov_bound).
    region_diagonal: torch.Tensor | None = field(default=None, repr=False)

    def describe(self, piecewise_linear: bool = True) -> str:
        """What certified the targets: the proof, or the per-region (ReLU) or per-sample (smooth) analysis."""
        if self.proved:
            return f"globally stable: Lyapunov diagonal ({self.method}), margin {self.margin:.3g}"
        return f"{'per region' if piecewise_linear else 'per sample'}: no global proof ({self.reason})"

    def summary(self) -> dict:
        return {"proved": self.proved, "method": self.method, "reason": self.reason, "margin": self.margin,
                "slope_bound": self.slope_bound}

    def error_bound(self, residual: torch.Tensor) -> torch.Tensor:
        """Per sample (B,), a bound on |x - x*|_2 from the residual F(x) (B, N) of a state x."""
        d = self.diagonal.to(residual)
        g = self.slope_bound * (residual * d).norm(dim=-1) / self.margin
        return self.weights_norm * g + residual.norm(dim=-1)


def no_proof(method: str, reason: str, slope_bound: float = 1.0,
             region_diagonal: torch.Tensor | None = None) -> GlobalProof:
    return GlobalProof(False, method, reason, slope_bound=slope_bound, region_diagonal=region_diagonal)


def prove_global_stability(network: RecurrentNetwork) -> GlobalProof:
    """The network's global stability proof (see the module docstring), found once per network."""
    key = _digest(network)
    if key not in _CACHE:
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = _prove(network.weights.detach().cpu().double(), network.slope_bound)
    return _CACHE[key]


def _digest(network: RecurrentNetwork) -> str:
    digest = hashlib.sha256(network.weights.detach().cpu().double().contiguous().numpy().tobytes())
    digest.update(repr(network.slope_bound).encode())
    return digest.hexdigest()


def _prove(weights: torch.Tensor, slope: float) -> GlobalProof:
    n = len(weights)
    if not math.isfinite(slope):
        return no_proof("unbounded slope", "the activation's slope is unbounded (a power law with n > 1)", slope)
    a = torch.eye(n, dtype=torch.float64) - slope * weights
    self_gain = slope * weights.diagonal()
    excitatory = _units_of_sign(weights, 1.0)
    candidates = _candidates(weights, slope, excitatory)
    if (self_gain >= 1).any():
        unit = int(self_gain.argmax())
        return no_proof("diagonal", f"unit {unit} excites itself with gain {self_gain[unit].item():.3g} >= 1", slope,
                        _normalised(next(candidates)[1]))
    if len(excitatory) > 1:
        low, _ = _perron_root_bounds(slope * weights[excitatory][:, excitatory])
        if low >= 1:
            return no_proof("excitatory subnetwork", f"its {len(excitatory)} excitatory units are unstable on their "
                             f"own: the spectral radius of s W_EE is at least {low:.4g}, not below 1 "
                             "(an inhibition-stabilized or multistable network)", slope, _normalised(next(candidates)[1]))
    norm = math.sqrt(weights.abs().sum(0).max().item() * weights.abs().sum(1).max().item())  # >= |W|_2
    best, best_value = None, -math.inf
    for method, d in candidates:
        d = _normalised(d)
        if d is None:
            continue
        margin = certified_margin(a, d)
        if margin is not None:
            return GlobalProof(True, method, margin=margin, slope_bound=slope, diagonal=d, weights_norm=norm)
        value = _smallest_eigenvalue(a, d) / d.mean().item()
        if value > best_value:
            best, best_value = d, value
    steps = min(_ASCENT_STEPS, int(_ASCENT_WORK / n**3))
    if best is not None and steps:
        d, margin, value = _ascent(a, best, steps)
        best_value = max(best_value, value)
        if margin is not None:
            return GlobalProof(True, "search", margin=margin, slope_bound=slope, diagonal=d, weights_norm=norm)
        best = d
    return no_proof("search", f"no diagonal D found that makes D(I - sW) + (I - sW)^T D positive definite "
                    f"({steps} search steps; its best smallest eigenvalue {best_value:.3g}, mean(D) = 1)", slope, best)


def _normalised(d: torch.Tensor) -> torch.Tensor | None:
    """D scaled to max 1, or None where it is not a positive diagonal."""
    return d / d.max() if bool(torch.isfinite(d).all() and (d > 0).all()) else None


def _units_of_sign(weights: torch.Tensor, sign: float) -> torch.Tensor:
    """Units whose outgoing weights (their column of W, off the diagonal) all have this sign (+1:
    excitatory, -1: inhibitory), zeros allowed, not all zero."""
    off = sign * (weights - torch.diag(weights.diagonal()))
    return ((off >= 0).all(0) & (off > 0).any(0)).nonzero().squeeze(1)


def _perron_root_bounds(matrix: torch.Tensor) -> tuple[float, float]:
    """Collatz-Wielandt bounds min_i (Bx)_i / x_i <= rho(B) <= max_i (Bx)_i / x_i of a nonnegative B
    (both valid for any x > 0; power iteration tightens them)."""
    x = torch.ones(len(matrix), dtype=matrix.dtype)
    low, high = 0.0, math.inf
    for _ in range(_PERRON_STEPS):
        y = matrix @ x
        ratio = y / x
        low, high = max(low, ratio.min().item()), min(high, ratio.max().item())
        if high - low <= 1e-6 * high or low >= 1 or high < 1:
            break
        x = (y / y.max()).clamp_min(1e-30) + 1e-12
    return low, high


def _perron_vector(matrix: torch.Tensor) -> torch.Tensor:
    x = torch.ones(len(matrix), dtype=matrix.dtype)
    for _ in range(_PERRON_STEPS):
        y = matrix @ x + 1e-9 * x.sum()
        y = y / y.max()
        if (y - x).abs().max() <= 1e-10:
            break
        x = y
    return x


def _candidates(weights: torch.Tensor, slope: float, excitatory: torch.Tensor):
    """(name, D) to try, cheapest first."""
    n = len(weights)
    comparison = slope * weights.abs()
    comparison.diagonal().copy_(slope * weights.diagonal())
    shift = max(0.0, -comparison.diagonal().min().item())  # nonnegative for the power iteration
    shifted = comparison + shift * torch.eye(n, dtype=weights.dtype)
    yield "Perron vectors of |W|", _perron_vector(shifted.T) / _perron_vector(shifted)
    yield "identity", torch.ones(n, dtype=weights.dtype)
    inhibitory = _units_of_sign(weights, -1.0)
    if len(excitatory) and len(inhibitory) and len(excitatory) + len(inhibitory) == n:
        ratio = (weights[excitatory][:, inhibitory].abs().sum() / weights[inhibitory][:, excitatory].sum()).item()
        for factor in (1.0, 0.5, 2.0):
            d = torch.ones(n, dtype=weights.dtype)
            d[inhibitory] = ratio * factor
            yield "E/I populations", d


def _symmetrised(a: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    da = d[:, None] * a
    return da + da.T


def _smallest_eigenvalue(a: torch.Tensor, d: torch.Tensor) -> float:
    return torch.linalg.eigvalsh(_symmetrised(a, d))[0].item()


def _ascent(a: torch.Tensor, start: torch.Tensor, steps: int) -> tuple[torch.Tensor, float | None, float]:
    """Raise lambda_min(D A + A^T D) / mean(D) by soft-min gradient steps on log D (a step that does
    not improve is taken back and the step halved): (the first D whose margin is certified, its margin,
    its value) or (the best D, None, its value)."""
    log_d, step = torch.log(start), 0.5
    best_value, best_log = -math.inf, log_d
    for _ in range(steps):
        d = torch.exp(log_d - log_d.max())
        values, vectors = torch.linalg.eigh(_symmetrised(a, d))
        value = values[0].item() / d.mean().item()
        if value > best_value:
            best_value, best_log, step = value, log_d, 1.2 * step
            if value > 0:
                margin = certified_margin(a, d)
                if margin is not None:
                    return d, margin, value
        else:  # back to the best point, with a shorter step
            log_d, step = best_log, 0.5 * step
            d = torch.exp(log_d - log_d.max())
            values, vectors = torch.linalg.eigh(_symmetrised(a, d))
        sharpness = 20.0 / max(values[:10].abs().max().item(), 1e-12)
        weight = torch.softmax(-sharpness * (values - values[0]), 0)
        gradient = 2 * ((vectors * (a @ vectors)) @ weight) * d  # d lambda / d log d_i
        gradient = gradient - gradient.mean()  # the scale of D is free
        log_d = log_d + step * gradient / gradient.abs().max().clamp_min(1e-300)
    return torch.exp(best_log - best_log.max()), None, best_value


def certified_margin(a: torch.Tensor, d: torch.Tensor) -> float | None:
    """m > 0 such that lambda_min(D A + A^T D) >= 2m is proved in spite of rounding, or None.
    The margin m is taken from an inverse-iteration estimate of lambda_min, then proved (`cholesky_shift`)."""
    n = len(a)
    s = _symmetrised(a, d)
    magnitude = d[:, None] * a.abs()
    rounding = symmetrisation_rounding((magnitude + magnitude.T).norm())

    def factor(target: float) -> torch.Tensor | None:
        shift = cholesky_shift(s, rounding, torch.tensor(target, dtype=s.dtype))
        chol, info = torch.linalg.cholesky_ex(s - shift * torch.eye(n, dtype=s.dtype))
        return chol if info.item() == 0 else None

    chol = factor(0.0)
    if chol is None:
        return None
    v = torch.linspace(1.0, 2.0, n, dtype=s.dtype)  # inverse iteration: converges to lambda_min's vector
    for _ in range(12):
        v = torch.cholesky_solve(v[:, None], chol)[:, 0]
        v = v / v.norm()
    estimate = (v @ s @ v).item()  # about lambda_min(S)
    for fraction in (0.45, 0.2, 0.05, 0.01):
        if estimate > 0 and factor(2 * fraction * estimate) is not None:
            return fraction * estimate
    return None


def symmetrisation_rounding(magnitude_norm: torch.Tensor) -> torch.Tensor:
    """A 2-norm bound on the rounding of S = fl(D A + A^T D), from the Frobenius norm of |D||A| + |A|^T|D|
    (entrywise S is off by at most 5u times that matrix: A itself carries one rounding of I - sW)."""
    return 5 * (torch.finfo(torch.float64).eps / 2) * magnitude_norm


def cholesky_shift(s: torch.Tensor, rounding: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The shift c (one per matrix of the batch s (..., P, P)) such that a floating-point Cholesky
    factorisation of fl(S - cI) that runs to completion proves lambda_min >= target for the exact
    matrix that S (computed with error at most `rounding` in the 2-norm) stands for.

    If the factorisation of T = fl(S - cI) completes, T + dT is positive definite with
    |dT|_2 <= gamma_{P+1} (1 + gamma_{P+1}) tr(T) (Demmel 1989; gamma_k = k u / (1 - k u)), and forming T
    costs u (|S_ii| + c) on its diagonal; so c = target + those three terms leaves S - target I positive
    semidefinite and the exact matrix's smallest eigenvalue at least target."""
    n = s.shape[-1]
    u = torch.finfo(torch.float64).eps / 2
    gamma = (n + 1) * u / (1 - (n + 1) * u)
    diagonal = s.diagonal(dim1=-2, dim2=-1)
    trace, largest_diagonal = diagonal.clamp_min(0).sum(-1), diagonal.abs().amax(-1)
    return target + 1.01 * (gamma * (1 + gamma) * trace + u * (largest_diagonal + target) + rounding)
