"""Sampler correctness on an analytic case, guidance, and seeding.

Data x0 ~ N(mu, S) and noise eps ~ N(0, I) make (x_t, v) jointly Gaussian for
x_t = (1 - t) x0 + t eps, v = eps - x0, so the exact velocity field is the conditional mean

    v*(x, t) = -mu + (t I - (1 - t) S) ((1 - t)^2 S + t^2 I)^-1 (x - (1 - t) mu),

and integrating it from N(0, I) at t = 1 to t = 0 lands exactly on N(mu, S). Plugging v* into the
samplers tests the integrators, the time grid and the sign conventions, with no model in the loop.
"""
import pytest
import torch

from hieratok.generator.sampler import (Guidance, balanced_labels, guided_velocity, per_sample_noise, sample,
                                        time_grid)

pytestmark = pytest.mark.usefixtures("single_thread")

MU = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
_A = torch.tensor([[1.0, 0.0, 0.0], [0.8, 0.5, 0.0], [-0.3, 0.4, 1.6]], dtype=torch.float64)
SIGMA = _A @ _A.T  # eigenvalues 0.13, 1.69, 2.88: anisotropic and correlated
EYE = torch.eye(3, dtype=torch.float64)


def exact_velocity(x: torch.Tensor, t: float, labels=None) -> torch.Tensor:
    cov_xt = (1 - t) ** 2 * SIGMA + t ** 2 * EYE
    cross = t * EYE - (1 - t) * SIGMA  # Cov(v, x_t)
    gain = torch.linalg.solve(cov_xt, cross.T).T  # cross @ cov_xt^-1 (cov_xt is symmetric)
    return -MU + (x - (1 - t) * MU) @ gain.T


def exact_output_moments(sampler: str, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each sampler step is affine in x for this linear field, so the whole sampler is x1 -> A x1 + b and
    its output law for x1 ~ N(0, I) is N(b, A A^T) exactly: the discretisation error, free of Monte Carlo noise."""
    b = sample(exact_velocity, torch.zeros(1, 3, dtype=torch.float64), None, steps, sampler)[0]
    a = sample(exact_velocity, EYE.clone(), None, steps, sampler) - b  # row i: A e_i
    return b, a.T @ a


@pytest.mark.parametrize("sampler", ["euler", "heun"])
def test_samples_match_the_gaussian_target(sampler):
    """20,000 samples, 128 steps: mean within 0.05 and covariance within 0.1 (max abs entry) of the target."""
    noise = torch.randn(20_000, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = sample(exact_velocity, noise, None, steps=128, sampler=sampler)
    assert (x.mean(0) - MU).abs().max() < 0.05
    assert (torch.cov(x.T) - SIGMA).abs().max() < 0.1


def test_heun_is_closer_than_euler_at_equal_steps_and_converges_faster():
    errors = {}
    for sampler in ("euler", "heun"):
        for steps in (4, 8, 16, 32):
            mean, cov = exact_output_moments(sampler, steps)
            errors[sampler, steps] = max((mean - MU).abs().max().item(), (cov - SIGMA).abs().max().item())
    for steps in (4, 8, 16, 32):
        assert errors["heun", steps] < errors["euler", steps] / 4, errors
    # first order vs second order: doubling the steps roughly halves Euler's error, quarters Heun's
    for steps in (8, 16):
        assert 1.6 < errors["euler", steps] / errors["euler", 2 * steps] < 2.5, errors
        assert 3.0 < errors["heun", steps] / errors["heun", 2 * steps] < 5.0, errors
    # and with the same noise, the samples themselves show it
    noise = torch.randn(20_000, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    cov_err = {s: (torch.cov(sample(exact_velocity, noise, None, 8, s).T) - SIGMA).abs().max() for s in ("euler", "heun")}
    assert cov_err["heun"] < cov_err["euler"] / 4, cov_err


class _TwoBranchModel(torch.nn.Module):
    """A 'model' whose conditional and unconditional velocities are known: cond = x + label, uncond = -x."""

    null_class = 5

    def forward(self, x, t, labels):
        lab = labels.to(x.dtype).view(-1, 1)
        return torch.where(lab == self.null_class, -x, x + lab)


def test_guidance_formula_and_interval():
    model = _TwoBranchModel()
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(2))
    labels = torch.tensor([0, 1, 2, 3])
    cond, uncond = x + labels.view(-1, 1), -x
    v = guided_velocity(model, model.null_class, Guidance(scale=3.0, interval=(0.2, 0.6)))
    torch.testing.assert_close(v(x, 0.4, labels), uncond + 3.0 * (cond - uncond))
    for t_outside in (0.1, 0.7, 1.0):
        torch.testing.assert_close(v(x, t_outside, labels), cond)
    with pytest.raises(ValueError, match="guidance interval"):
        Guidance(2.0, (0.7, 0.3))


def test_guidance_scale_one_is_the_conditional_model():
    from hieratok.config.loader import load_config
    from hieratok.generator.model import Generator

    torch.manual_seed(0)
    model = Generator(load_config("configs/generator/tiny.yaml").model).eval()
    for p in model.parameters():  # leave adaLN-zero: a zero-initialised model would make the test vacuous
        torch.nn.init.normal_(p, std=0.05)
    noise = per_sample_noise(0, range(6), (64, 8))
    labels = balanced_labels(6, 10)
    with torch.no_grad():
        guided = sample(guided_velocity(model, model.null_class, Guidance(1.0, (0.0, 1.0))), noise, labels, 4, "heun")
        plain = sample(lambda x, t, y: model(x, torch.full((x.shape[0],), t), y), noise, labels, 4, "heun")
        torch.testing.assert_close(guided, plain, rtol=0, atol=0)
        strong = sample(guided_velocity(model, model.null_class, Guidance(4.0, (0.0, 1.0))), noise, labels, 4, "heun")
    assert (strong - plain).abs().max() > 1e-3


def test_same_seed_same_noise_whatever_the_batching():
    whole = per_sample_noise(7, range(10), (4, 2))
    parts = torch.cat([per_sample_noise(7, range(0, 3), (4, 2)), per_sample_noise(7, range(3, 10), (4, 2))])
    assert torch.equal(whole, parts)
    assert not torch.equal(whole, per_sample_noise(8, range(10), (4, 2)))
    assert not torch.equal(whole[0], whole[1])


def test_time_grid_and_labels():
    assert time_grid(4) == [1.0, 0.75, 0.5, 0.25, 0.0]
    with pytest.raises(ValueError, match="at least 1"):
        time_grid(0)
    counts = torch.bincount(balanced_labels(103, 10), minlength=10)
    assert counts.max() - counts.min() <= 1 and counts.sum() == 103
    with pytest.raises(ValueError, match="unknown sampler 'rk4'"):
        sample(exact_velocity, torch.zeros(1, 3, dtype=torch.float64), None, 2, "rk4")
