"""The run's figures: test examples per population, and response curves where inputs are few.

Each reads at a glance: a population on its own scale, a single unit as two bars with its
error written, a large population as FF against recurrent rates rather than a tangle of
lines, integer unit ticks and no offset labels (`1e-5 - 4.803e-1`).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

RECURRENT, FEED_FORWARD = "recurrent fixed point", "feed-forward"
SCATTER_ABOVE = 100  # a population of more units is drawn as FF against recurrent rates
CURVE_UNITS = 6  # response curves of at most this many units per population (evenly chosen)
CURVE_POINTS = 65
MAX_CURVE_INPUTS = 2  # response curves for networks with at most this many inputs
STATUS_MARKERS = {"oscillating": ("v", "tab:red"), "timeout": ("s", "tab:purple"), "unstable": ("D", "tab:brown"),
                  "diverged": ("^", "black"), "nonfinite": ("x", "black")}


def _plain(axis) -> None:
    """Numbers as they are: no offset or scientific-notation labels on either axis."""
    for which in ("x", "y"):
        try:
            axis.ticklabel_format(axis=which, useOffset=False, style="plain")
        except AttributeError:  # a categorical axis has no scalar formatter
            pass


def render(figure, path: Path) -> np.ndarray:
    """Draw `figure` once, into the PNG file `path`, and close it; its RGB pixels (height x width x 3,
    in [0, 1]) for TensorBoard, which add_figure would draw a second time (about 0.4 s of a run)."""
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return plt.imread(path)[..., :3]


def relative_error(predicted: np.ndarray, target: np.ndarray) -> float:
    """||P - T|| / ||T||, as the run's rel_error (one unit: its own relative error)."""
    return float(np.linalg.norm(np.atleast_1d(predicted - target)) / max(np.linalg.norm(np.atleast_1d(target)), 1e-300))


def plot_examples(inputs: torch.Tensor, target: torch.Tensor, predicted: torch.Tensor, n_examples: int,
                  populations: dict[str, torch.Tensor]):
    """One row per example: the input, then one panel per population (its own y-axis, so that a
    large inhibitory rate does not flatten the excitatory ones) with the recurrent fixed point
    against the FF output; the legend sits above the panels (tensors from any device)."""
    n_examples = min(n_examples, len(inputs))
    inputs, target, predicted = (values[:n_examples].cpu().double().numpy() for values in (inputs, target, predicted))
    figure, axes = plt.subplots(n_examples, 1 + len(populations), figsize=(2.6 * (1 + len(populations)),
                                2.0 * n_examples + 0.6), squeeze=False)
    for row in range(n_examples):
        axes[row, 0].bar(range(inputs.shape[1]), inputs[row], color="0.6")
        axes[row, 0].xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
        axes[row, 0].set_ylabel(f"example {row}")
        for column, (name, units) in enumerate(populations.items(), start=1):
            axis, units = axes[row, column], units.cpu().numpy()
            recurrent, ff = target[row, units], predicted[row, units]
            if len(units) == 1:  # two bars and the error in words, not two dots on a zoomed axis
                bars = axis.bar([0, 1], [recurrent[0], ff[0]], color=["tab:blue", "tab:orange"])
                axis.bar_label(bars, fmt="%.3g", fontsize=7)
                axis.set_xticks([0, 1], ["recurrent", "FF"], fontsize=8)
                error = relative_error(ff[0], recurrent[0])
                axis.set_title(f"{name} (unit {units[0]}): error {100 * error:.2g}%", fontsize=8)
                top, bottom = max(recurrent[0], ff[0], 0.0), min(recurrent[0], ff[0], 0.0)
                pad = 0.2 * (top - bottom) or 1.0  # room for the values written on the bars
                axis.set_ylim(bottom - (pad if bottom < 0 else 0.0), top + (pad if top > 0 or bottom == 0 else 0.0))
            elif len(units) > SCATTER_ABOVE:  # each unit a point: on the diagonal where the FF is right
                axis.plot(recurrent, ff, ".", ms=3, color="tab:orange")
                low, high = min(recurrent.min(), ff.min()), max(recurrent.max(), ff.max())
                axis.plot([low, high], [low, high], "-", color="tab:blue", lw=0.8)
                axis.set_xlabel("recurrent rate", fontsize=8)
                axis.set_ylabel("FF rate", fontsize=8)
                axis.set_title(f"{name}: {len(units)} units, error {100 * relative_error(ff, recurrent):.2g}%", fontsize=8)
            else:
                axis.plot(units, recurrent, "o-", ms=3, label=RECURRENT)
                axis.plot(units, ff, "x--", ms=3, label=FEED_FORWARD)
                axis.xaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))
                axis.set_title(f"{name} rates", fontsize=9)
                if row == n_examples - 1:
                    axis.set_xlabel("unit")
            _plain(axis)
    axes[0, 0].set_title("input u", fontsize=9)
    axes[-1, 0].set_xlabel("input dimension")
    _plain(axes[0, 0])
    handles = [plt.Line2D([], [], marker="o", color="tab:blue", label=RECURRENT),
               plt.Line2D([], [], marker="x", ls="--", color="tab:orange", label=FEED_FORWARD)]
    figure.legend(handles=handles, loc="upper center", ncol=2, fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, 0, 1, 1 - 0.45 / figure.get_figheight()))
    return figure


def response_curve_inputs(inputs: torch.Tensor, points: int = CURVE_POINTS) -> torch.Tensor:
    """(D, points, D): for each input k, u_k from the lowest to the highest value in `inputs`, the
    other inputs at their median (the curve a reader of a low-dimensional network draws)."""
    low, high, median = inputs.amin(0), inputs.amax(0), inputs.median(0).values
    curves = median.expand(inputs.shape[1], points, -1).clone()
    for k in range(inputs.shape[1]):
        curves[k, :, k] = torch.linspace(float(low[k]), float(high[k]), points, dtype=inputs.dtype)
    return curves


def plot_response_curves(curves: torch.Tensor, target: torch.Tensor, predicted: torch.Tensor, status: list[str],
                         populations: dict[str, torch.Tensor]):
    """One row per input, one panel per population: each unit's rate against that input, the
    recurrent fixed point (solid; absent where the input did not settle, whose statuses are
    marked along the axis) against the FF (dashed). `curves` (D, P, D); target, predicted (D*P, N)."""
    d, points = curves.shape[:2]
    target, predicted = (values.cpu().double().reshape(d, points, -1).numpy() for values in (target, predicted))
    settled = torch.tensor([s == "converged" for s in status]).reshape(d, points).numpy()
    figure, axes = plt.subplots(d, len(populations), figsize=(3.2 * len(populations), 2.6 * d + 0.6), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k in range(d):
        drive = curves[k, :, k].cpu().numpy()
        for column, (name, units) in enumerate(populations.items()):
            axis = axes[k, column]
            chosen = units[torch.linspace(0, len(units) - 1, min(CURVE_UNITS, len(units))).round().long()]
            for i, unit in enumerate(chosen.tolist()):
                colour = colours[i % len(colours)]
                recurrent = target[k, :, unit].copy()
                recurrent[~settled[k]] = float("nan")
                label = f"unit {unit}" if len(units) > 1 else None
                axis.plot(drive, recurrent, "-", color=colour, lw=1.6, label=label)
                axis.plot(drive, predicted[k, :, unit], "--", color=colour, lw=1.0)
            for name_of_status, (marker, colour) in STATUS_MARKERS.items():
                where = [p for p in range(points) if status[k * points + p] == name_of_status]
                if where:
                    axis.plot(drive[where], [axis.get_ylim()[0]] * len(where), marker, color=colour, ms=4,
                              clip_on=False, label=f"{name_of_status} ({len(where)})")
            axis.set_title(f"{name}" + (f" ({len(units)} units, {len(chosen)} shown)" if len(units) > CURVE_UNITS
                                        else ""), fontsize=9)
            axis.set_xlabel(f"input u{k}" + (" (the others at their median)" if d > 1 else ""), fontsize=8)
            if column == 0:
                axis.set_ylabel("rate")
            if axis.get_legend_handles_labels()[0]:
                axis.legend(fontsize=7, frameon=False)
            _plain(axis)
    handles = [plt.Line2D([], [], color="0.3", lw=1.6, label=RECURRENT),
               plt.Line2D([], [], color="0.3", lw=1.0, ls="--", label=FEED_FORWARD)]
    figure.legend(handles=handles, loc="upper center", ncol=2, fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, 0, 1, 1 - 0.45 / figure.get_figheight()))
    return figure
