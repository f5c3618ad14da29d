"""The figures are read at a glance: a panel per population on its own scale, units labelled by
population, a single unit as two bars with its error written, a large population as FF against
recurrent rates, no offset labels, a legend that covers no panel; response curves where a network
has one or two inputs, with the inputs that do not settle marked."""

from __future__ import annotations

import pytest
import torch

from rnn_ff.figures import SCATTER_ABOVE, plot_examples, plot_response_curves, response_curve_inputs
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
    titles = [ax.get_title() for ax in axes[:1 + len(populations)]]
    assert titles[0] == "input u"
    for column, (population, units) in enumerate(populations.items(), start=1):
        low, high = axes[column].get_ylim()
        assert low <= rates[0, units].min() and rates[0, units].max() <= high
        if len(units) == 1:  # two bars from 0, their values and the error written
            rate = float(rates[0, units[0]])
            error = 0.1 if rate else 0.0
            assert titles[column] == f"{population} (unit {units[0]}): error {100 * error:.2g}%"
            heights = [bar.get_height() for bar in axes[column].patches]
            assert heights == pytest.approx([rate, 0.9 * rate])
        elif len(units) > SCATTER_ABOVE:  # each unit a point, FF against recurrent
            assert titles[column].startswith(f"{population}: {len(units)} units, error ")
        else:  # its own scale: the small excitatory rates are not flattened by a large inhibitory one
            assert titles[column] == f"{population} rates"
            assert high - low <= 1.5 * (rates[0, units].max() - min(0.9 * rates[0, units].min(), rates[0, units].min())) + 0.1
    figure.canvas.draw()
    assert all(ax.yaxis.get_offset_text().get_text() == "" and ax.xaxis.get_offset_text().get_text() == ""
               for ax in axes)  # no `1e-5 - 4.803e-1` labels
    [legend] = figure.legends
    assert not any(ax.get_legend() for ax in axes)
    box = legend.get_window_extent()
    assert not any(box.overlaps(ax.get_window_extent()) for ax in axes)


def test_rates_that_differ_in_the_fifth_digit_get_no_offset_label_and_unit_ticks_are_integers():
    rates = torch.tensor([[0.48031, 0.48032, 0.48033, 15.91]], dtype=torch.float64)
    populations = {"excitatory": torch.tensor([0, 1, 2]), "inhibitory": torch.tensor([3])}
    figure = plot_examples(torch.tensor([[1.0, 2.0]]), rates, rates * (1 + 1e-5), 1, populations)
    figure.canvas.draw()
    for axis in figure.axes:
        assert axis.yaxis.get_offset_text().get_text() == "" and axis.xaxis.get_offset_text().get_text() == ""
    assert all(float(tick).is_integer() for tick in figure.axes[1].get_xticks())


def test_a_large_population_is_drawn_as_ff_against_recurrent_rates():
    rates = torch.rand(2, 200, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    figure = plot_examples(torch.rand(2, 3, dtype=torch.float64), rates, rates, 2, {"units": torch.arange(200)})
    axis = figure.axes[1]
    assert axis.get_title() == "units: 200 units, error 0%"
    assert axis.get_xlabel() == "recurrent rate" and axis.get_ylabel() == "FF rate"


def test_response_curves_mark_the_inputs_that_do_not_settle():
    """Wilson-Cowan's limit cycle between drives of about 0.71 and 1.02: no recurrent curve there,
    the oscillating inputs marked and counted; the FF curve runs through."""
    task = build_task(TASKS["wilson_cowan"][0]())
    inputs, _ = task.sample(64, torch.Generator().manual_seed(0))
    curves = response_curve_inputs(inputs)
    assert curves.shape == (1, 65, 1)
    result = solve(task.network, curves.reshape(-1, 1))
    oscillating = result.status.count("oscillating")
    assert 10 <= oscillating <= 30
    figure = plot_response_curves(curves, result.rates, result.rates, result.status, task.populations())
    excitatory = figure.axes[0]
    assert excitatory.get_title() == "excitatory" and excitatory.get_xlabel() == "input u0"
    recurrent, ff, marks = excitatory.lines[:3]
    drive = curves[0, :, 0]
    settled = torch.tensor([s == "converged" for s in result.status])
    assert torch.isnan(torch.as_tensor(recurrent.get_ydata()))[~settled].all()
    assert not torch.isnan(torch.as_tensor(ff.get_ydata())).any()
    assert marks.get_label() == f"oscillating ({oscillating})"
    assert torch.equal(torch.as_tensor(marks.get_xdata()), drive[~settled])


def test_response_curves_vary_each_input_with_the_others_at_their_median():
    inputs = torch.tensor([[0.0, 10.0], [1.0, 20.0], [2.0, 30.0]], dtype=torch.float64)
    curves = response_curve_inputs(inputs, points=5)
    assert curves[0, :, 0].tolist() == [0.0, 0.5, 1.0, 1.5, 2.0] and (curves[0, :, 1] == 20.0).all()
    assert curves[1, :, 1].tolist() == [10.0, 15.0, 20.0, 25.0, 30.0] and (curves[1, :, 0] == 1.0).all()
