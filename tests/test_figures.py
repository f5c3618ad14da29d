"""examples.png is read at a glance: a panel per population on its own scale, units labelled by
population, and a legend that covers no panel."""

from __future__ import annotations

import pytest
import torch

from rnn_ff.evaluation import plot_examples
from rnn_ff.solver import solve
from rnn_ff.tasks import TASKS, build_task


@pytest.mark.parametrize("name", ["wta", "transformation", "denoising", "ssn", "wilson_cowan"])
def test_each_population_has_its_own_panel_and_the_legend_covers_none(name):
    task = build_task(TASKS[name][0]())
    inputs, _ = task.sample(3, torch.Generator().manual_seed(0))
    rates = solve(task.network, inputs).rates
    populations = task.populations()
    assert sorted(torch.cat(list(populations.values())).tolist()) == list(range(task.network.n_units))
    figure = plot_examples(inputs, rates, 0.9 * rates, 3, populations)
    axes = figure.axes
    assert [ax.get_title() for ax in axes[:1 + len(populations)]] == ["input u", *[f"{p} rates" for p in populations]]
    # Each panel's scale is its own population's: the small excitatory rates are not flattened.
    for column, units in enumerate(populations.values(), start=1):
        low, high = axes[column].get_ylim()
        assert low <= rates[0, units].min() and rates[0, units].max() <= high
        assert high - low <= 1.5 * (rates[0, units].max() - min(0.9 * rates[0, units].min(), rates[0, units].min())) + 0.1
    figure.canvas.draw()
    [legend] = figure.legends
    assert not any(ax.get_legend() for ax in axes)
    box = legend.get_window_extent()
    assert not any(box.overlaps(ax.get_window_extent()) for ax in axes)
