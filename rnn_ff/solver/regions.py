"""Exact analysis of a ReLU network on its linear regions, batched over regions and samples.

On a region (active set S = {i : x_i > 0}) the dynamics are linear, tau de/dt = (-I + W D_S) e
with e = x - x*, so everything about a region is computed once, for many regions at once,
and kept in a `RegionTable` on the solver's device:

- its fixed point:  (I - W_SS) x*_S = h_S,  x*_R = W_RS x*_S + h_R  (R = the inactive units);
- its stability: the Jacobian is block triangular, eigenvalues of A = T_S^-1 (-I + W_SS) plus
  -1/tau_i off S, so only the |S| x |S| block is decomposed (numpy as the fallback where
  torch's eig fails to converge on repeated eigenvalues);
- what a certificate needs to show that a trajectory now in the region stays in it until it
  settles, so that x* is the attractor the trajectory is heading to (never a nearby saddle or
  another region's point). With A = V diag(lambda) V^-1 and c = V^-1 e_S(0):
      e_S(t) = V (exp(lambda t) c)
      e_R(t) = exp(-t/tau_R) e_R(0) + sum_k Q_k c_k (exp(lambda_k t) - exp(-t/tau_R)) / (1 + tau_R lambda_k)
  with Q = W_RS V. Signs are checked on a time grid up to the time at which a bound
  K exp(beta t) on |e| falls below the distance of x* to the region's walls.

Regions of different sizes share one table: every block is padded to the table's width P
with decoupled dummy units (identity rows in I - W_SS, eigenvalue -1, zero coupling), which
leave the real block's solution and eigenvectors untouched (LAPACK's balancing splits off a
row and column that are zero off the diagonal before the QR iteration). So one batched call
serves any mix of regions, and a sample's data is a gather by its region's row, with no
Python loop over regions and no host round trip per region.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator, NamedTuple, Sequence, TypeVar

import numpy as np
import torch

from rnn_ff.network import RecurrentNetwork
from rnn_ff.solver.global_stability import cholesky_shift, symmetrisation_rounding

GRID = 48  # time points of the certificate's sign check
_DUMMY_EIGENVALUE = -1.0
_BITS_PER_WORD = 62  # active-set bits packed per int64 key word (sign bit unused)
NO_REGION = -1  # the key word of the placeholder row
RETIRED_REGION = -2  # minus its row: the key words of a row replaced by another (found by no sample)
_SCREEN_ELEMENTS = 2**23  # elements of one batch of blocks in the stability screen
_SOLVE_ELEMENTS = 2**23  # elements of one batch of (|S| x |S| and N x |S|) blocks in the exact solve
_ANALYSIS_BYTES = 2**28  # work memory of the eigen-analysis's batches in progress (one per core)
T, R = TypeVar("T"), TypeVar("R")


@dataclass
class RegionTable:
    """Analysed linear regions, one row each, padded to a common width P (on the solver's device).

    A compact table (every row proved by a diagonal Lyapunov function, `diagonal_lyapunov_bound`)
    needs no eigenvectors and no dense L: its modal fields and `lyapunov` are placeholders of width 1
    and its ellipsoids use `lyapunov_diagonal`. Mixed with full rows it is made full (`full`)."""

    keys: torch.Tensor  # (G, words) int64: the packed active set
    active: torch.Tensor  # (G, P) long: active units, then padding (index 0)
    valid: torch.Tensor  # (G, P) bool: False on padding
    max_real: torch.Tensor  # (G,) an upper bound on the largest real eigenvalue part of the S block
    # (the value itself where computed; nan: eig failed; +inf: row 0)
    certifiable: torch.Tensor  # (G,) bool: stable and V well conditioned (the modal certificate)
    decay: torch.Tensor  # (G,) rate beta of the bound |e(t)| <= K exp(beta t)
    eigenvalues: torch.Tensor  # (G, P) complex
    vectors: torch.Tensor  # (G, P, P) complex V
    inverse_vectors: torch.Tensor  # (G, P, P) complex V^-1 (0 where not certifiable)
    coupling: torch.Tensor  # (G, N, P) complex Q / (1 + tau_i lambda_k) on inactive rows; 0 where resonant
    resonant_factor: torch.Tensor  # (G,) 2 / (e |max_real|) if the region has a resonance, else 0
    has_lyapunov: torch.Tensor  # (G,) bool: a quadratic Lyapunov function of the S block was found and verified
    lyapunov: torch.Tensor  # (G, P, P) its matrix L (A^T L + L A negative definite)
    lyapunov_diagonal: torch.Tensor  # (G, P) L's diagonal where L is diagonal (compact tables), else 0
    reach_active: torch.Tensor  # (G, P) max of |e_i| over the ellipsoid e^T L e <= 1, by padded slot (0 on padding)
    reach_inactive: torch.Tensor  # (G, N) max of |W_iS e| over that ellipsoid for inactive units i (0 on active ones)
    vectors_magnitude: torch.Tensor  # (G, P, P) |V|, real: the deviation bound's, gathered every window
    coupling_magnitude: torch.Tensor  # (G, N, P) |coupling|, real
    # (G, N, P) complex Q / tau_i where 1 + tau_i lambda_k = 0, else 0; None: no region has a resonance
    resonant_coupling: torch.Tensor | None = None
    compact: bool = False

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def width(self) -> int:
        return self.active.shape[1]

    def _map(self, change) -> RegionTable:
        """The table with `change` applied to every tensor field."""
        return RegionTable(**{name: value if value is None or isinstance(value, bool) else change(value)
                              for name, value in vars(self).items()})

    def to(self, device: torch.device, dtype: torch.dtype) -> RegionTable:
        """On `device`, real fields in `dtype` and complex ones in its complex counterpart."""
        complex_dtype = torch.complex128 if dtype == torch.float64 else torch.complex64

        def moved(value: torch.Tensor) -> torch.Tensor:
            if value.is_complex():
                return value.to(device, complex_dtype)
            return value.to(device, dtype) if value.is_floating_point() else value.to(device)
        return self._map(moved)

    def select(self, rows: torch.Tensor) -> RegionTable:
        return self._map(lambda value: value[rows])

    def full(self) -> RegionTable:
        """A compact table's rows in full form: identity V, no modal certificate, dense diagonal L."""
        if not self.compact:
            return self
        g, p, n = len(self), self.width, self.coupling.shape[1]
        eye = torch.eye(p, dtype=self.lyapunov.dtype, device=self.keys.device).expand(g, p, p)
        complex_dtype = self.eigenvalues.dtype
        zeros = torch.zeros(g, n, p, dtype=self.coupling_magnitude.dtype, device=self.keys.device)
        diagonal = torch.where(self.valid, self.lyapunov_diagonal, 1.0)
        return RegionTable(**{**vars(self), "compact": False,
                              "eigenvalues": torch.full((g, p), _DUMMY_EIGENVALUE, dtype=complex_dtype,
                                                        device=self.keys.device),
                              "vectors": eye.to(complex_dtype), "inverse_vectors": torch.zeros_like(eye, dtype=complex_dtype),
                              "coupling": zeros.to(complex_dtype), "lyapunov": torch.diag_embed(diagonal),
                              "vectors_magnitude": eye.clone(), "coupling_magnitude": zeros,
                              "resonant_coupling": None})

    def padded(self, width: int) -> RegionTable:
        """The same regions, padded with dummy units to `width` >= P."""
        if width <= self.width:
            return self
        out = self.allocated(len(self), width)
        out.write(0, self)
        return out

    @staticmethod
    def concat(*tables: RegionTable) -> RegionTable:
        """The tables' rows, in order, in one table (full unless every one is compact)."""
        if len(tables) == 1:
            return tables[0]
        if not all(table.compact for table in tables):
            tables = tuple(table.full() for table in tables)
        first = tables[0]
        if any(table.resonant_coupling is not None for table in tables):
            first = first.with_resonant_coupling()
        out = first.allocated(sum(len(table) for table in tables), max(table.width for table in tables))
        start = 0
        for table in tables:
            out.write(start, table)
            start += len(table)
        return out

    def with_capacity(self, rows: int, width: int | None = None) -> RegionTable:
        """The same regions (padded to `width`) followed by uninitialised rows, up to `rows` in all
        (none read before written; the pages are only used as rows are written)."""
        out = self.allocated(max(rows, len(self)), max(width or 0, self.width))
        out.write(0, self)
        return out

    def allocated(self, rows: int, width: int) -> RegionTable:
        """An uninitialised table of `rows` rows of `width` slots, of this one's kind."""
        def empty(name: str, value: torch.Tensor) -> torch.Tensor:
            shape = list(value.shape)
            shape[0] = rows
            for dim in _slot_dims(name, self.compact):
                shape[dim] = width
            return value.new_empty(shape)
        return RegionTable(**{name: value if value is None or isinstance(value, bool) else empty(name, value)
                              for name, value in vars(self).items()})

    def write(self, start: int, rows: RegionTable) -> None:
        """Put `rows` (of this kind, at most this width) at rows start, start + 1, ... of this table, their
        slots padded with decoupled dummy units (identity rows in I - W_SS, eigenvalue -1, zero coupling),
        which leave the real block's solution and eigenvectors untouched."""
        end, p = start + len(rows), rows.width
        for name, value in vars(self).items():
            if value is None or isinstance(value, bool):
                continue
            source = getattr(rows, name)
            if source is None:  # a resonant coupling that these rows do not have
                value[start:end] = 0
                continue
            dims = _slot_dims(name, self.compact)
            target = value[start:end]
            if value.shape[1:] == source.shape[1:]:
                target.copy_(source)
                continue
            target.fill_(_SLOT_PADDING.get(name, 0))
            if len(dims) == 2:  # a square block: identity on the dummy units
                target.diagonal(dim1=1, dim2=2)[:, p:] = 1
                target[:, :p, :p] = source
            elif dims == (1,):
                target[:, :p] = source
            else:
                target[:, :, :p] = source

    def with_resonant_coupling(self) -> RegionTable:
        """The same table with an explicit (zero where absent) resonant coupling."""
        if self.resonant_coupling is not None:
            return self
        return RegionTable(**{**vars(self), "resonant_coupling": torch.zeros_like(self.coupling)})


# Where a table field's slots (padded active units) are: dims of size P (the modal fields are
# placeholders of width 1 in a compact table).
_SLOT_FIELDS = {"active": (1,), "valid": (1,), "reach_active": (1,), "lyapunov_diagonal": (1,)}
_MODAL_FIELDS = {"eigenvalues": (1,), "vectors": (1, 2), "inverse_vectors": (1, 2), "lyapunov": (1, 2),
                 "vectors_magnitude": (1, 2), "coupling": (2,), "coupling_magnitude": (2,),
                 "resonant_coupling": (2,)}
_SLOT_PADDING = {"eigenvalues": _DUMMY_EIGENVALUE, "valid": False}


def _slot_dims(name: str, compact: bool) -> tuple[int, ...]:
    return _SLOT_FIELDS.get(name, ()) + (() if compact else _MODAL_FIELDS.get(name, ()))


def key_words(n: int) -> int:
    return max(1, -(-n // _BITS_PER_WORD))


def pack_active_sets(states: torch.Tensor) -> torch.Tensor:
    """(B, N) states -> (B, words) int64 keys of their active sets (x > 0), on the same device."""
    n = states.shape[1]
    words = key_words(n)
    active = torch.zeros(len(states), words * _BITS_PER_WORD, dtype=torch.int64, device=states.device)
    active[:, :n] = states > 0
    weights = 2 ** torch.arange(_BITS_PER_WORD, dtype=torch.int64, device=states.device)
    return (active.view(len(states), words, _BITS_PER_WORD) * weights).sum(-1)


def _within(weights: torch.Tensor, active: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """W_SS (B, P, P) for padded active sets, zero on the padding."""
    pair = valid[:, :, None] & valid[:, None, :]
    return torch.where(pair, weights[active[:, :, None], active[:, None, :]], 0.0)


def _onto(weights: torch.Tensor, active: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """W[:, S] (B, N, P) for padded active sets: every unit's weights from the active units, zero on the padding."""
    return torch.where(valid[:, None, :], weights[:, active].permute(1, 0, 2), 0.0)


def region_blocks(network: RecurrentNetwork, masks: torch.Tensor, width: int) -> tuple[torch.Tensor, ...]:
    """Padded active sets (G, P), their validity (G, P) and the S blocks A = T_S^-1 (W_SS - I)
    (G, P, P) of regions given as boolean masks, in float64 on the masks' device; the padding
    is a decoupled dummy unit with eigenvalue -1."""
    weights = network.weights.to(masks.device, torch.float64)
    tau = network.tau.to(masks.device, torch.float64)
    active, valid = padded_active_sets(masks, width)
    pair = valid[:, :, None] & valid[:, None, :]
    eye = torch.eye(width, dtype=torch.float64, device=masks.device).expand(len(masks), width, width)
    tau_s = torch.where(valid, tau[active], 1.0)
    block = torch.where(pair, (_within(weights, active, valid) - eye) / tau_s[:, :, None],
                        torch.where(eye.bool(), _DUMMY_EIGENVALUE, 0.0))
    return active, valid, block


def certainly_unstable(blocks: torch.Tensor, stability_margin: float, squarings: int = 16) -> torch.Tensor:
    """Which blocks A (G, P, P) are certainly not stable (max Re(lambda) >= -stability_margin),
    decided on the blocks' device without an eigensolver; False means "ask the eigensolver".

    With M = exp(A T), rho(M) = exp(T max Re(lambda)) >= |tr M| / P, so log(|tr M| / P) / T bounds
    max Re(lambda) from below. M is formed once (matrix_exp at T = h = 1 / ||A||) and squared,
    renormalised each time, up to T = 2^16 h. Squaring a non-normal M amplifies its rounding
    errors, so a bound on the error of the computed power is carried along and taken off |tr M|
    first: a stable but non-normal block is never called unstable."""
    g, p = blocks.shape[:2]
    eps = torch.finfo(blocks.dtype).eps
    h = 1.0 / blocks.abs().sum(-1).amax(-1).clamp_min(1e-12)
    power = torch.linalg.matrix_exp(blocks * h[:, None, None])
    error = torch.full((g,), 100 * p * eps, dtype=blocks.dtype, device=blocks.device)  # relative to ||power||
    log_scale = torch.zeros(g, dtype=blocks.dtype, device=blocks.device)
    unstable = torch.zeros(g, dtype=torch.bool, device=blocks.device)
    horizon = h.clone()
    for _ in range(squarings + 1):
        norm = power.abs().sum(-1).amax(-1).clamp_min(1e-300)
        trace = power.diagonal(dim1=-2, dim2=-1).sum(-1).abs() - p * error * norm  # |tr| of the exact power, at least
        lower = (log_scale + torch.log(trace.clamp_min(0) / p)) / horizon
        unstable |= torch.nan_to_num(lower, nan=-math.inf) >= -stability_margin
        power = power / norm[:, None, None]
        power = power @ power
        error = (2 * error + error**2 + p * eps) / power.abs().sum(-1).amax(-1).clamp_min(1e-300)
        log_scale = 2 * (log_scale + torch.log(norm))
        horizon = 2 * horizon
    return unstable


class RegionAnalysis(NamedTuple):
    table: RegionTable | None  # the regions that may be stable
    studied: torch.Tensor  # their positions among the regions analysed
    unstable: torch.Tensor  # the positions of the others
    by_diagonal: int  # how many of the table's regions D proved stable (`diagonal_lyapunov_bound`)


def analyse_regions(network: RecurrentNetwork, masks: torch.Tensor, keys: torch.Tensor, dtype: torch.dtype,
                    stability_margin: float, width: int,
                    diagonal: torch.Tensor | None = None) -> RegionAnalysis:
    """Analyse regions given as boolean (G, N) masks (at most `width` active units each): the table
    of those that may be stable (on `keys`' device), their positions among the G, the positions of
    the others, which are certainly unstable, and how many D proved.

    On a GPU, regions shown unstable by `certainly_unstable` need nothing more and never leave the
    device; the others are analysed on the CPU in float64 (batched eig is slow on GPUs), and only
    the finished table is sent back, in the solver's dtype. On the CPU the eigen-analysis itself is
    the cheapest test. With a diagonal D (the global proof's best try, `GlobalProof.region_diagonal`),
    a region that D proves stable (`diagonal_lyapunov_bound`, a Cholesky factorisation) gets its
    diagonal Lyapunov function and needs no eigensolver. Regions are analysed in batches sized by
    the memory each needs."""
    if masks.is_cuda:
        rows = max(1, _SCREEN_ELEMENTS // width**2)  # bounds the (rows, P, P) blocks and their powers
        may_be_stable = ~torch.cat([certainly_unstable(region_blocks(network, part, width)[2], stability_margin)
                                    for part in masks.split(rows)])
        n_studied = int(may_be_stable.sum())  # host round trip
        order = torch.argsort((~may_be_stable).to(torch.int8), stable=True)
        studied, unstable = order[:n_studied], order[n_studied:]
    else:
        studied, unstable = torch.arange(len(masks)), torch.zeros(0, dtype=torch.long)
    if not len(studied):
        return RegionAnalysis(None, studied, unstable, 0)
    table, order, by_diagonal = _host_analysis(network, masks[studied], keys[studied], dtype, stability_margin,
                                               width, diagonal)
    return RegionAnalysis(table, studied[order.to(studied.device)], unstable, by_diagonal)


def _host_analysis(network: RecurrentNetwork, masks: torch.Tensor, keys: torch.Tensor, dtype: torch.dtype,
                   stability_margin: float, width: int,
                   diagonal: torch.Tensor | None) -> tuple[RegionTable, torch.Tensor, int]:
    """The regions analysed on the CPU: their masks go there once and their table comes back once. In
    between, batches sized by the memory each needs and at least one per CPU core, each on a core of
    its own (LAPACK's eig gains little from threads of its own, and runs single-threaded here).
    Returns the table (in `dtype`, on `keys`' device), for each of its rows the region's position
    among the masks, and how many D proved."""
    masks, cpu_keys = masks.cpu(), keys.cpu()
    workers = torch.get_num_threads()
    rows = max(1, min(_ANALYSIS_BYTES // workers // analysis_bytes(network.n_units, width), -(-len(masks) // workers)))
    parts = torch.arange(len(masks)).split(rows)
    results = on_cpu_cores(lambda part: _analysed_batch(network, masks[part], cpu_keys[part], stability_margin,
                                                        diagonal), parts)
    table = RegionTable.concat(*(table for table, _, _ in results))
    order = torch.cat([part[part_order] for part, (_, part_order, _) in zip(parts, results)])
    return table.to(keys.device, dtype), order, sum(proved for _, _, proved in results)


def _analysed_batch(network: RecurrentNetwork, masks: torch.Tensor, keys: torch.Tensor, stability_margin: float,
                    diagonal: torch.Tensor | None) -> tuple[RegionTable, torch.Tensor, int]:
    """One batch of regions (CPU tensors) analysed: those that D proves stable get a compact row, the
    others an eigen-analysis. Returns the table (CPU, float64), for each of its rows the region's
    position in the batch, and how many D proved."""
    bound = torch.full((len(masks),), math.nan, dtype=torch.float64)
    if diagonal is not None:
        bound = diagonal_lyapunov_bound(network, masks, diagonal)
    proved = bound < -stability_margin
    by_diagonal, by_eigen = proved.nonzero().squeeze(1), (~proved).nonzero().squeeze(1)
    tables = []
    if len(by_diagonal):
        tables.append(_diagonal_analysis(network, masks[by_diagonal], keys[by_diagonal], bound[by_diagonal], diagonal))
    if len(by_eigen):
        tables.append(_eigen_analysis(network, masks[by_eigen], keys[by_eigen], stability_margin))
    return RegionTable.concat(*tables), torch.cat([by_diagonal, by_eigen]), len(by_diagonal)


def diagonal_lyapunov_bound(network: RecurrentNetwork, masks: torch.Tensor, diagonal: torch.Tensor) -> torch.Tensor:
    """Per region (G,), an upper bound on the largest real eigenvalue part of its S block, proved by D;
    nan where D proves nothing.

    On the region with active set S the flow is e_S' = A e_S, A = T_S^-1 (W_SS - I). With the diagonal
    L = D_S T_S,  L A + A^T L = -(D_S (I - W_SS) + (I - W_SS)^T D_S), minus the principal S submatrix of
    G = D(I - W) + (I - W)^T D. If a Cholesky factorisation with its rounding bounded (`cholesky_shift`)
    proves lambda_min(G_SS) >= t > 0, every eigenpair A v = lambda v has 2 Re(lambda) v*Lv = v*(LA + A^T L)v
    <= -t |v|^2, so Re(lambda) <= -t / (2 max_S d_i tau_i), and e^T L e decreases: the invariant
    ellipsoids of `inside_invariant_ellipsoid`. A principal submatrix of a positive definite G is
    positive definite, so D proves every region of a diagonally stable network; without a global proof
    it still proves the regions that avoid what makes G indefinite (a mutually inhibiting pair that is
    only ever active one at a time, a few excitatory units of an inhibition-stabilized network)."""
    weights = network.weights.detach().cpu().double()
    tau = network.tau.detach().cpu().double()
    d = diagonal.cpu().double()
    g, width = len(masks), max(1, int(masks.sum(1).max()) if len(masks) else 1)
    a = torch.eye(len(d), dtype=torch.float64) - weights
    magnitude = d[:, None] * a.abs()
    active, valid = padded_active_sets(masks, width)
    pair = valid[:, :, None] & valid[:, None, :]
    eye = torch.eye(width, dtype=torch.float64).expand(g, width, width)
    symmetric = torch.where(pair, (d[:, None] * a + (d[:, None] * a).T)[active[:, :, None], active[:, None, :]], eye)
    magnitude_norm = torch.where(pair, (magnitude + magnitude.T)[active[:, :, None], active[:, None, :]], 0.0)
    rounding = symmetrisation_rounding(magnitude_norm.flatten(1).norm(dim=1))
    diagonal_s = torch.where(valid, symmetric.diagonal(dim1=-2, dim2=-1), 0.0)
    target = 1e-6 * diagonal_s.sum(-1) / valid.sum(-1).clamp_min(1)
    shift = cholesky_shift(symmetric, rounding, target)
    with single_threaded_lapack():
        _, info = torch.linalg.cholesky_ex(symmetric - shift[:, None, None] * eye)
    largest = torch.where(valid, (d * tau)[active], 0.0).amax(-1)
    proved = (info == 0) & (target > 0) & valid.any(-1)
    return torch.where(proved, -target / (2 * largest), math.nan)


def _diagonal_analysis(network: RecurrentNetwork, masks: torch.Tensor, keys: torch.Tensor, bound: torch.Tensor,
                       diagonal: torch.Tensor) -> RegionTable:
    """A compact table (CPU, float64) of regions proved stable by D (`diagonal_lyapunov_bound`): their
    Lyapunov function L = D_S T_S and its reaches; no eigenvectors (the modal certificate is off)."""
    tau = network.tau.detach().cpu().double()
    active, valid = padded_active_sets(masks, max(1, int(masks.sum(1).max())))
    scale = torch.where(valid, (diagonal.cpu().double() * tau)[active], 1.0)  # the diagonal of L
    rows = _onto(network.weights.detach().cpu().double(), active, valid)  # (G, N, P): W_iS
    reach_inactive = torch.where(~masks, (rows.square() / scale[:, None, :]).sum(-1).sqrt(), 0.0)
    return _compact_table(keys, active, valid, bound, torch.ones(len(keys), dtype=torch.bool),
                          torch.where(valid, scale, 0.0), torch.where(valid, scale.rsqrt(), 0.0), reach_inactive)


def _compact_table(keys: torch.Tensor, active: torch.Tensor, valid: torch.Tensor, max_real: torch.Tensor,
                   has_lyapunov: torch.Tensor, lyapunov_diagonal: torch.Tensor, reach_active: torch.Tensor,
                   reach_inactive: torch.Tensor) -> RegionTable:
    """A compact RegionTable from its per-row fields (CPU, float64), width-1 placeholders for the rest."""
    g, n = len(keys), reach_inactive.shape[1]
    one = torch.ones(g, 1, 1, dtype=torch.float64)
    zeros = torch.zeros(g, n, 1, dtype=torch.float64)
    return RegionTable(keys=keys, active=active, valid=valid, max_real=max_real,
                       certifiable=torch.zeros(g, dtype=torch.bool), decay=max_real,
                       eigenvalues=torch.full((g, 1), _DUMMY_EIGENVALUE, dtype=torch.complex128),
                       vectors=one.to(torch.complex128), inverse_vectors=(0 * one).to(torch.complex128),
                       coupling=zeros.to(torch.complex128), resonant_factor=torch.zeros(g, dtype=torch.float64),
                       has_lyapunov=has_lyapunov, lyapunov=one, lyapunov_diagonal=lyapunov_diagonal,
                       reach_active=reach_active, reach_inactive=reach_inactive, vectors_magnitude=one,
                       coupling_magnitude=zeros, compact=True)


def row_bytes(n: int, width: int) -> int:
    """Bytes of one region's full row in a RegionTable of width P (complex V, V^-1, Q and the resonant
    coupling; real L, |V|, |Q| and the reaches). A compact row is far smaller; budgets count full rows."""
    return 16 * (2 * width**2 + 2 * n * width) + 8 * (2 * width**2 + n * width + 2 * n + 3 * width)


def analysis_bytes(n: int, width: int) -> int:
    """Peak bytes of analysing one region with `width` active units in an N-unit network: its
    table row (V, V^-1 and Q complex, L real) and the eigen-analysis's work arrays, with room for the
    Van Loan block exponential (2P x 2P) of a region whose eigenvectors are ill-conditioned."""
    return 16 * (6 * width**2 + 3 * n * width) + 8 * 8 * (2 * width) ** 2


def placeholder_row(key: torch.Tensor, n: int, dtype: torch.dtype) -> RegionTable:
    """A one-row table that certifies nothing and counts as unstable (max_real = +inf): the row
    of every sample whose region is unstable or holds no fixed point of that sample."""
    zero = torch.zeros(1, 1, dtype=torch.float64)
    return _compact_table(key[None].cpu(), torch.zeros(1, 1, dtype=torch.long), torch.zeros(1, 1, dtype=torch.bool),
                          torch.full((1,), math.inf, dtype=torch.float64), torch.zeros(1, dtype=torch.bool), zero,
                          zero, torch.zeros(1, n, dtype=torch.float64)).to(key.device, dtype)


def _eigen_analysis(network: RecurrentNetwork, masks: torch.Tensor, keys: torch.Tensor,
                    stability_margin: float) -> RegionTable:
    """Eigenvalues (all regions) and eigenvectors, coupling and decay (stable regions): a table on the CPU, float64."""
    weights = network.weights.detach().cpu().double()
    tau = network.tau.detach().cpu().double()
    masks = masks.cpu()
    g, n = masks.shape
    width = max(1, int(masks.sum(1).max()) if g else 1)
    active, valid, block = region_blocks(network, masks, width)
    # One eigendecomposition per region; V^-1 where stable, which also gives cond_1(V).
    values, vectors = _eig(block, vectors=True)
    max_real = torch.where(valid, values.real, -math.inf).amax(-1)
    max_real = torch.where(torch.isfinite(values.real).all(-1), max_real, math.nan)
    stable = max_real < -stability_margin
    inverse = torch.zeros_like(vectors)
    condition = torch.full((g,), math.inf, dtype=torch.float64)
    if stable.any():
        with single_threaded_lapack():
            stable_inverse, info = torch.linalg.inv_ex(vectors[stable])
        good = (info == 0) & torch.isfinite(stable_inverse).flatten(1).all(1)
        norm_1 = lambda m: m.abs().sum(-2).amax(-1)  # noqa: E731
        condition[stable] = torch.where(good, norm_1(vectors[stable]) * norm_1(stable_inverse), math.inf)
        inverse[stable] = torch.where(good[:, None, None], stable_inverse, 0)
    certifiable = stable & (condition < 1e8) & torch.isfinite(values).all(-1)
    inverse = torch.where(certifiable[:, None, None], inverse, 0)
    inactive = ~masks  # (G, N)
    # Q = W_RS V / (1 + tau_i lambda_k) on the inactive rows only (padded to the most any region has),
    # then put at their units' rows of an (G, N, P) table (zero on active rows and padding columns).
    # W_RS V is one real product with V's real and imaginary parts side by side (half a complex product).
    rest, rest_valid = padded_active_sets(inactive, max(1, int(inactive.sum(1).max())))
    w_rs = torch.where(rest_valid[:, :, None] & valid[:, None, :], weights[rest[:, :, None], active[:, None, :]], 0.0)
    parts = (w_rs @ torch.view_as_real(vectors).flatten(-2)).unflatten(-1, (-1, 2))
    full = torch.view_as_complex(parts.contiguous())  # (G, R, P)
    tau_rest = tau[rest]
    resonance = 1.0 + tau_rest[:, :, None] * values[:, None, :]
    singular = resonance.abs() <= 1e-8  # lambda_k = -1/tau_i: the driven term becomes t exp(lambda_k t) / tau_i
    resonant = singular & rest_valid[:, :, None] & valid[:, None, :]
    has_resonance = resonant.flatten(1).any(1)
    placed = rest[:, :, None].expand(-1, -1, width)  # padding rows add zeros to unit 0's row

    def by_unit(rows: torch.Tensor) -> torch.Tensor:
        return torch.zeros(g, n, width, dtype=rows.dtype).scatter_add_(1, placed, rows)

    coupling = by_unit(torch.where(singular, 0, full / torch.where(singular, 1, resonance)))
    resonant_coupling = by_unit(torch.where(resonant, full / tau_rest[:, :, None], 0)) if has_resonance.any() else None
    # t exp(alpha t) <= 2 / (e |alpha|) exp(alpha t / 2): a resonance halves the decay rate of the bound.
    resonant_factor = torch.where(has_resonance, 2.0 / (math.e * -max_real), 0.0)
    off_decay = torch.where(inactive, -1.0 / tau, -math.inf).amax(-1)
    decay = torch.maximum(torch.where(has_resonance, max_real / 2, max_real), off_decay)
    has_lyapunov = torch.zeros(g, dtype=torch.bool)
    lyapunov = torch.eye(width, dtype=torch.float64).repeat(g, 1, 1)
    reach_active, reach_inactive = torch.zeros(g, width, dtype=torch.float64), torch.zeros(g, n, dtype=torch.float64)
    # A Lyapunov function only where the modal certificate cannot serve: a stable region whose V is
    # ill-conditioned (defective, strongly non-normal) or singular. Elsewhere the modal bound certifies
    # every trajectory that stays in the region once it is near enough to x*.
    needs = stable & ~certifiable
    if needs.any():
        has_lyapunov[needs], lyapunov[needs], reach_active[needs], reach_inactive[needs] = lyapunov_ellipsoids(
            block[needs], weights, active[needs], valid[needs], inactive[needs])

    return RegionTable(keys=keys, active=active, valid=valid, max_real=max_real, certifiable=certifiable,
                       decay=decay, eigenvalues=values, vectors=vectors, inverse_vectors=inverse, coupling=coupling,
                       resonant_factor=resonant_factor, has_lyapunov=has_lyapunov, lyapunov=lyapunov,
                       lyapunov_diagonal=torch.zeros(g, width, dtype=torch.float64), reach_active=reach_active,
                       reach_inactive=reach_inactive, vectors_magnitude=vectors.abs(), coupling_magnitude=coupling.abs(),
                       resonant_coupling=resonant_coupling)


@dataclass
class LyapunovFunctions:
    """Quadratic Lyapunov functions V(e) = e^T L e of linear flows e' = A e, one per matrix."""

    verified: torch.Tensor  # (G,) bool: L positive definite and A^T L + L A negative definite, checked
    matrix: torch.Tensor  # (G, P, P) L
    inverse: torch.Tensor  # (G, P, P) L^-1
    decay: torch.Tensor  # (G,) q = -largest eigenvalue of A^T L + L A (> 0 where verified)
    largest: torch.Tensor  # (G,) largest eigenvalue of L


def lyapunov_functions(blocks: torch.Tensor, max_doublings: int = 96) -> LyapunovFunctions:
    """For stable matrices A (G, P, P), float64 on the CPU: L with A^T L + L A negative definite, so
    that every ellipsoid e^T L e <= r^2 is invariant under e' = A e, whatever A's eigenvectors
    (defective and strongly non-normal matrices included).

    L = integral_0^T exp(A^T t) exp(A t) dt: the first step h by Van Loan's block exponential, then
    doubled (L <- L + M^T L M, M <- M^2 with M = exp(A t)) until |M| <= 1/2, where A^T L + L A =
    M^T M - I is negative definite. Rounding is not trusted: L counts only where that is checked."""
    lyapunov = _van_loan_gramian(blocks, max_doublings)
    return _verified(blocks, (lyapunov + lyapunov.mT) / 2)


def _van_loan_gramian(blocks: torch.Tensor, max_doublings: int) -> torch.Tensor:
    """integral_0^T exp(A^T t) exp(A t) dt (G, P, P), with T such that |exp(A T)| <= 1/2."""
    g, p = blocks.shape[:2]
    eye = torch.eye(p, dtype=blocks.dtype).expand(g, p, p)
    h = 1.0 / blocks.abs().sum(-1).amax(-1).clamp_min(1e-12)
    van_loan = torch.cat([torch.cat([-blocks.mT, eye], 2), torch.cat([torch.zeros_like(blocks), blocks], 2)], 1)
    exponential = torch.linalg.matrix_exp(van_loan * h[:, None, None])
    flow = exponential[:, p:, p:]
    lyapunov = flow.mT @ exponential[:, :p, p:]
    for _ in range(max_doublings):
        lyapunov = lyapunov + flow.mT @ lyapunov @ flow
        flow = flow @ flow
        if (torch.linalg.matrix_norm(flow) <= 0.5).all():
            break
    return lyapunov


def _verified(blocks: torch.Tensor, lyapunov: torch.Tensor) -> LyapunovFunctions:
    """Check candidate Lyapunov matrices L (G, P, P), symmetric, for the flows e' = A e: L positive
    definite and not too ill-conditioned, A^T L + L A negative definite beyond a bound on rounding."""
    p = blocks.shape[1]
    eye = torch.eye(p, dtype=blocks.dtype).expand_as(blocks)
    derivative = blocks.mT @ lyapunov + lyapunov @ blocks
    eps = torch.finfo(blocks.dtype).eps
    slack = 1e3 * p * eps * torch.linalg.matrix_norm(blocks) * torch.linalg.matrix_norm(lyapunov)
    finite = torch.isfinite(lyapunov).flatten(1).all(1) & torch.isfinite(derivative).flatten(1).all(1)
    lyapunov = torch.where(finite[:, None, None], lyapunov, eye)
    derivative = torch.where(finite[:, None, None], (derivative + derivative.mT) / 2, -eye)
    decay = -_symmetric_spectrum(derivative)[:, -1]
    spectrum = _symmetric_spectrum(lyapunov)
    with single_threaded_lapack():
        factor, info = torch.linalg.cholesky_ex(lyapunov)
        inverse = torch.cholesky_inverse(torch.where((info == 0)[:, None, None], factor, eye))
    conditioned = (spectrum[:, 0] > 0) & (spectrum[:, -1] < 1e12 * spectrum[:, 0])
    verified = finite & (decay > slack) & conditioned & (info == 0)
    return LyapunovFunctions(verified, lyapunov, inverse, decay, spectrum[:, -1])


def lyapunov_ellipsoids(blocks: torch.Tensor, weights: torch.Tensor, active: torch.Tensor, valid: torch.Tensor,
                        inactive: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """For stable S blocks (G, P, P): (verified (G,), L, the reach of the active units by slot (G, P)
    and of W_iS e for every unit (G, N), 0 on active rows), the reaches over e^T L e <= 1."""
    functions = lyapunov_functions(blocks)
    inverse = functions.inverse
    reach_active = torch.where(valid, inverse.diagonal(dim1=-2, dim2=-1).clamp_min(0).sqrt(), 0.0)
    rows = _onto(weights, active, valid)  # (G, N, P): W_iS
    reach_inactive = torch.where(inactive, ((rows @ inverse) * rows).sum(-1).clamp_min(0).sqrt(), 0.0)
    return functions.verified, functions.matrix, reach_active, reach_inactive


def _symmetric_spectrum(matrices: torch.Tensor) -> torch.Tensor:
    """Ascending eigenvalues of symmetric matrices (G, P, P); nan rows where LAPACK fails to converge."""
    try:
        with single_threaded_lapack():
            return torch.linalg.eigvalsh(matrices)
    except RuntimeError:  # one ill-conditioned matrix fails the whole batch: try them one by one
        values = torch.full(matrices.shape[:2], math.nan, dtype=matrices.dtype)
        for k, matrix in enumerate(matrices.numpy()):
            try:
                values[k] = torch.from_numpy(np.linalg.eigvalsh(matrix))
            except np.linalg.LinAlgError:
                continue
        return values


def _eig(blocks: torch.Tensor, vectors: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Batched eigenvalues (and eigenvectors) in complex128; numpy per block where torch fails
    (repeated eigenvalues), nan where both fail (such a region is never called stable)."""
    try:
        with single_threaded_lapack():
            if vectors:
                values, vecs = torch.linalg.eig(blocks)
                return values.to(torch.complex128), vecs.to(torch.complex128)
            return torch.linalg.eigvals(blocks).to(torch.complex128), None
    except RuntimeError:  # e.g. "failed to converge ... too many repeated eigenvalues"
        values = torch.full(blocks.shape[:2], complex(math.nan), dtype=torch.complex128)
        vecs = torch.eye(blocks.shape[1], dtype=torch.complex128).repeat(len(blocks), 1, 1)
        for k, block in enumerate(blocks.numpy()):
            try:
                v, w = np.linalg.eig(block)
            except np.linalg.LinAlgError:
                continue
            values[k], vecs[k] = torch.from_numpy(v.astype(np.complex128)), torch.from_numpy(w.astype(np.complex128))
        return values, vecs if vectors else None


def max_real_parts(network: RecurrentNetwork, masks: torch.Tensor) -> torch.Tensor:
    """Largest real eigenvalue part of each region's S block (G,), float64 on the CPU."""
    masks = masks.cpu()
    _, valid, block = region_blocks(network, masks, max(1, int(masks.sum(1).max()) if len(masks) else 1))
    values = _eig(block, vectors=False)[0]
    max_real = torch.where(valid, values.real, -math.inf).amax(-1)
    return torch.where(torch.isfinite(values.real).all(-1), max_real, math.nan)


def padded_active_sets(masks: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, N) boolean masks -> (active, valid), each (B, width): the active units in ascending
    order, then padding (unit 0, valid False). `width` must be at least the largest |S|."""
    order = torch.sort((~masks).to(torch.int8), dim=1, stable=True).indices[:, :width]
    valid = torch.arange(width, device=masks.device) < masks.sum(1, keepdim=True)
    return torch.where(valid, order, 0), valid


def active_set_fixed_points(network: RecurrentNetwork, drive: torch.Tensor, active: torch.Tensor,
                            valid: torch.Tensor) -> torch.Tensor:
    """The fixed point (B, N) of each sample's region given by padded active sets (B, P): solve
    (I - W_SS) x_S = h_S (identity on the padding), then x_R = W_RS x_S + h_R. nan if singular."""
    system = torch.eye(active.shape[1], dtype=drive.dtype, device=drive.device) - _within(network.weights, active,
                                                                                           valid)
    with single_threaded_lapack():
        x_s, info = torch.linalg.solve_ex(system, torch.where(valid, drive.gather(1, active), 0.0))
    fixed = (_onto(network.weights, active, valid) * x_s[:, None, :]).sum(-1) + drive
    fixed = fixed.scatter(1, torch.where(valid, active, active[:, :1]),
                          torch.where(valid, x_s, x_s[:, :1]))  # padding repeats the first active unit
    fixed = torch.where(valid.any(1, keepdim=True), fixed, drive)  # no active unit: x* = h
    return torch.where((info == 0)[:, None], fixed, math.nan)


def exact_fixed_points(network: RecurrentNetwork, active_units: torch.Tensor, drive: torch.Tensor) -> torch.Tensor:
    """The fixed point of each sample's region (B, N), given as a boolean mask (B, N) of its active
    units, solved on that region's own |S| block.

    Unlike a padded solve, the answer depends only on the sample, never on the width that
    other samples' regions imposed; it is the reported answer (bit-identical whatever the batch
    on the CPU; a GPU's batched LU may change its algorithm with the batch size). One batched solve
    per distinct |S| (a host round trip each), in blocks that bound the (rows, |S|, |S|) systems."""
    sizes = active_units.sum(1)
    fixed = drive.clone()
    for size in sizes.unique().tolist():
        members = (sizes == size).nonzero().squeeze(1)
        rows = max(1, _SOLVE_ELEMENTS // max(1, size * max(size, network.n_units)))
        for part in members.split(rows):
            active, valid = padded_active_sets(active_units[part], size)
            fixed[part] = active_set_fixed_points(network, drive[part], active, valid)
    return fixed


def inside_invariant_ellipsoid(table: RegionTable, rows: torch.Tensor, states: torch.Tensor,
                               fixed: torch.Tensor) -> torch.Tensor:
    """Whether the region's invariant ellipsoid through each state lies in the region (B,): then
    the region's linear flow from the state never leaves it (active units stay above threshold;
    an inactive unit i obeys tau_i e_i' = -e_i + W_iS e_S, so e_i stays below max(e_i(0), the
    largest W_iS e_S on the ellipsoid)), so it is the network's trajectory, and it settles on x*."""
    slots, valid = table.active[rows], table.valid[rows]
    e_s = torch.where(valid, (states - fixed).gather(1, slots), 0.0)
    if table.compact:
        quadratic = (table.lyapunov_diagonal[rows] * e_s.square()).sum(-1)
    else:
        quadratic = (e_s[:, None, :] @ table.lyapunov[rows] @ e_s[:, :, None])[:, 0, 0]
    radius = quadratic.clamp_min(0).sqrt() * (1 + 1e-6)
    active_inside = torch.where(valid, radius[:, None] * table.reach_active[rows] < fixed.gather(1, slots), True)
    inactive_inside = torch.where(states > 0, True, radius[:, None] * table.reach_inactive[rows] <= -fixed)
    return table.has_lyapunov[rows] & active_inside.all(-1) & inactive_inside.all(-1)


def deviation_bound(table: RegionTable, rows: torch.Tensor, states: torch.Tensor,
                    fixed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """K such that |e_i(t)| <= K_i exp(beta t) for t >= 0 while the state stays in its region
    (beta = the region's decay rate): (B, P) for the active units (by padded slot, from the modal
    coordinates, so transient non-normal growth is included), (B, N) for the inactive ones."""
    active_units = states > 0
    e0 = states - fixed
    size = modal_coordinates(table, rows, e0).abs().to(states.dtype)[:, :, None]
    bound_s = (table.vectors_magnitude[rows] @ size)[:, :, 0]
    bound_r = torch.where(active_units, 0.0, e0.abs()) + 2.0 * (table.coupling_magnitude[rows] @ size)[:, :, 0]
    if table.resonant_coupling is not None:
        bound_r = bound_r + table.resonant_factor[rows, None] * (table.resonant_coupling[rows].abs() @ size)[:, :, 0]
    return bound_s, torch.where(active_units, 0.0, bound_r)


def settling_horizon(table: RegionTable, rows: torch.Tensor, states: torch.Tensor,
                     fixed: torch.Tensor) -> torch.Tensor:
    """Per sample (B,), a time after which every unit is certainly on x*'s side of its threshold
    if the state has not left the region before: each unit's bound K_i exp(beta t) on |e_i|
    falls below x*_i's distance to that threshold (a unit with K_i = 0 never moves). inf where
    no such time exists (not stable, V ill-conditioned, a moving unit whose x* is on its wall, a
    compact table)."""
    if table.compact:
        return torch.full((len(rows),), math.inf, dtype=states.dtype, device=states.device)
    bound_s, bound_r = deviation_bound(table, rows, states, fixed)
    slots = table.active[rows]
    margin_s = torch.where(table.valid[rows], fixed.gather(1, slots), math.inf)
    margin_r = torch.where(states > 0, math.inf, -fixed)
    bound, margin = torch.cat([bound_s, bound_r], 1), torch.cat([margin_s, margin_r], 1)
    per_unit = torch.log((bound / margin.clamp_min(1e-300)).clamp_min(1.0)) / -table.decay[rows, None]
    per_unit = torch.where(bound == 0, 0.0, torch.where(margin > 0, per_unit, math.inf))
    return torch.where(table.certifiable[rows], per_unit.amax(-1), math.inf)


def stays_in_region(network: RecurrentNetwork, table: RegionTable, rows: torch.Tensor, states: torch.Tensor,
                    fixed: torch.Tensor, horizon: torch.Tensor) -> torch.Tensor:
    """Whether the region's closed-form trajectory from each state keeps every unit on its side
    of threshold up to `horizon` (B,), proved on a grid t_0 = 0 < ... < t_G = horizon (denser
    early): at each t_k every unit is farther from its threshold than it can move before t_k+1,
    by a bound S_i exp(beta t) on its speed. (B,) mask."""
    active_units = states > 0
    bound_s, bound_r = deviation_bound(table, rows, states, fixed)
    # Speed bounds: e_S' = V Lambda exp(Lambda t) c; tau_R e_R' = -e_R + W_RS e_S.
    c = modal_coordinates(table, rows, states - fixed)
    speed_s = (table.vectors_magnitude[rows] @ (table.eigenvalues[rows].abs() * c.abs()).to(states.dtype)[:, :, None]
               )[:, :, 0]
    placement = _placement(table, rows, states.shape[1], states.dtype)
    w_cols = _onto(network.weights.abs(), table.active[rows], table.valid[rows])
    speed_r = (bound_r + (w_cols @ bound_s[:, :, None])[:, :, 0]) / network.tau
    speed = torch.where(active_units, (speed_s.to(states.dtype)[:, None, :] @ placement)[:, 0], speed_r)
    fractions = (torch.arange(0, GRID + 1, dtype=states.dtype, device=states.device) / GRID) ** 2
    times = horizon[:, None] * fractions  # (B, G + 1)
    path = region_trajectory(network, table, rows, states, fixed, times)
    side = torch.where(active_units[:, None, :], path, -path)  # > 0 (active) or >= 0 (inactive) inside
    reach = (speed[:, None, :] * torch.exp(table.decay[rows][:, None, None] * times[:, :-1, None])
             * (times[:, 1:] - times[:, :-1])[:, :, None])  # how far each unit can move before the next time
    active = active_units[:, None, :]
    between = torch.where(active, side[:, :-1] > reach, side[:, :-1] >= reach).all(-1).all(-1)
    at_horizon = torch.where(active_units, side[:, -1] > 0, side[:, -1] >= 0).all(-1)
    return between & at_horizon


def modal_coordinates(table: RegionTable, rows: torch.Tensor, deviation: torch.Tensor) -> torch.Tensor:
    """c = V^-1 e_S (B, P) for deviations e (B, N) from each sample's region fixed point."""
    e_s = torch.where(table.valid[rows], deviation.gather(1, table.active[rows]), 0.0)
    return (table.inverse_vectors[rows] @ e_s.to(table.vectors.dtype)[:, :, None])[:, :, 0]


def region_trajectory(network: RecurrentNetwork, table: RegionTable, rows: torch.Tensor, states: torch.Tensor,
                      fixed: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
    """x(t) (B, T, N) from x(0) = states under each sample's region dynamics (exactly the
    network's trajectory while it stays in the region), at per-sample times (B, T)."""
    e0 = states - fixed
    c = modal_coordinates(table, rows, e0)
    modes = torch.exp(times[..., None] * table.eigenvalues[rows][:, None, :]) * c[:, None, :]  # (B, T, P)
    e_s = (modes @ table.vectors[rows].transpose(1, 2)).real  # (B, T, P)
    relax = torch.exp(-times[..., None] / network.tau)  # (B, T, N)
    coupling = table.coupling[rows].transpose(1, 2)  # (B, P, N)
    e_r = relax * e0[:, None, :] + (modes @ coupling).real - relax * (c[:, None, :] @ coupling).real
    if table.resonant_coupling is not None:
        e_r = e_r + times[..., None] * (modes @ table.resonant_coupling[rows].transpose(1, 2)).real
    placement = _placement(table, rows, states.shape[1], states.dtype)
    e = torch.where(states[:, None, :] > 0, 0.0, e_r) + e_s @ placement
    return fixed[:, None, :] + e


def _placement(table: RegionTable, rows: torch.Tensor, n: int, dtype: torch.dtype) -> torch.Tensor:
    """(B, P, N) 0/1 matrix that puts each sample's padded S coordinates at their units."""
    units = torch.arange(n, device=rows.device)
    return ((table.active[rows][:, :, None] == units) & table.valid[rows][:, :, None]).to(dtype)


def on_cpu_cores(work: Callable[[T], R], parts: Sequence[T]) -> list[R]:
    """[work(part) for part in parts], spread over torch's CPU threads, each running its part with
    single-threaded LAPACK (torch releases the GIL inside its kernels): for batches of small dense
    factorisations, a core per batch is about twice as fast on two cores as two threads per call."""
    workers = min(torch.get_num_threads(), len(parts))
    if workers <= 1:
        return [work(part) for part in parts]

    def run(part: T) -> R:
        torch.set_num_threads(1)  # this worker's own thread count (and LAPACK's)
        return work(part)

    with single_threaded_lapack(), ThreadPoolExecutor(workers) as pool:
        return list(pool.map(run, parts))


@contextmanager
def single_threaded_lapack() -> Iterator[None]:
    """torch 2.13's CPU batched LU (getrf/getrs) returns corrupt pivots or hangs when it runs
    on several threads for N >~ 150; batched factorisations and solves run on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
