"""The rectified loss: a ReLU output unit that is silent where its target responds still learns."""

from __future__ import annotations

import pytest
import torch

from rnn_ff.model import FeedForwardApproximator


def sparse_bumps(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """24 output units, each a cone of radius 0.25 around its own centre in [0, 1]^3: each unit
    responds on about 5% of the inputs and is exactly 0 elsewhere, like the transformation's
    conjunction units."""
    inputs = torch.rand(n, 3, generator=generator)
    centres = torch.rand(24, 3, generator=torch.Generator().manual_seed(1))
    return inputs, (0.25 - (inputs[:, None, :] - centres[None]).norm(dim=-1)).clamp_min(0)


def fit(kind: str, seed: int, steps: int = 1500) -> tuple[int, float]:
    """Dead units (zero output on every input where the target responds) and rel_error after training."""
    generator = torch.Generator().manual_seed(seed)
    inputs, targets = sparse_bumps(2048, generator)
    torch.manual_seed(seed)
    model = FeedForwardApproximator(3, 24, hidden=64)
    model.fit_normalisation(inputs, targets)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        batch = torch.randint(len(inputs), (128,), generator=generator)
        loss = model.loss(inputs[batch], targets[batch], kind)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        predicted = model(inputs)
    dead = int(((predicted * (targets > 0)).amax(0) == 0).sum())
    return dead, float((predicted - targets).norm() / targets.norm())


@pytest.mark.parametrize("seed", [0, 1])
def test_rectified_loss_learns_the_units_the_output_relu_kills(seed):
    dead_mse, error_mse = fit("mse", seed)
    dead_rectified, error_rectified = fit("rectified", seed)
    assert dead_mse >= 2, "the old loss was expected to leave units dead on this problem"
    assert dead_rectified == 0
    assert error_rectified < 0.7 * error_mse


def test_rectified_loss_terms():
    """Target > 0: the pre-activation's squared error (a gradient even when it is negative);
    target 0: only a positive pre-activation costs; with no ReLU output both kinds are the MSE."""
    model = FeedForwardApproximator(1, 3, hidden=4)
    with torch.no_grad():
        model.output_layer.weight.zero_()
        model.output_layer.bias.copy_(torch.tensor([-0.5, -0.5, 0.25]))
    inputs, targets = torch.zeros(1, 1), torch.tensor([[1.0, 0.0, 0.0]])
    assert model.loss(inputs, targets, "rectified").item() == pytest.approx((1.5**2 + 0 + 0.25**2) / 3)
    assert model.loss(inputs, targets, "mse").item() == pytest.approx((1 + 0 + 0.25**2) / 3)
    model.loss(inputs, targets, "rectified").backward()
    assert model.output_layer.bias.grad[0] < 0  # pushes the silent unit up
    linear = FeedForwardApproximator(1, 3, hidden=4, output_activation="none")
    assert linear.loss(inputs, targets, "rectified").item() == linear.loss(inputs, targets, "mse").item()
    with pytest.raises(ValueError, match="allowed"):
        model.loss(inputs, targets, "huber")


@pytest.mark.parametrize("hidden_layers", [1, 2])
def test_rectified_loss_is_the_rectified_error_of_the_preactivation_in_value_and_gradient(hidden_layers):
    """model.loss computes the rectified loss as a distance to a reference without gradient (fewer
    kernels); it equals the formula it stands for, mean((where(t > 0, pre - t, max(pre, 0)) / scale)^2),
    in value and in every parameter's gradient, on targets with many zeros and pre-activations of
    both signs."""
    generator = torch.Generator().manual_seed(0)
    inputs, targets = sparse_bumps(256, generator)
    torch.manual_seed(0)
    model = FeedForwardApproximator(3, 24, hidden=32, hidden_layers=hidden_layers)
    model.fit_normalisation(inputs, targets)
    with torch.no_grad():  # pre-activations of both signs where the target is 0, and a target mean offset
        model.output_layer.bias.normal_(generator=generator)
        model.target_mean += 0.01
    preactivation = model.preactivation(inputs)
    assert (preactivation[targets == 0] < 0).any() and (preactivation[targets == 0] > 0).any()
    formula = ((torch.where(targets > 0, preactivation - targets, preactivation.clamp_min(0.0))
                / model.target_scale) ** 2).mean()
    expected = torch.autograd.grad(formula, list(model.parameters()))
    loss = model.loss(inputs, targets, "rectified")
    torch.testing.assert_close(loss, formula, rtol=1e-5, atol=0)
    for got, want in zip(torch.autograd.grad(loss, list(model.parameters())), expected):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-7)
