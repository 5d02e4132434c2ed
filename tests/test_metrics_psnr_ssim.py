"""PSNR and SSIM agree with scikit-image's independent implementation."""
import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from hieratok.eval.image_metrics import psnr, ssim, to_unit_range


def _pairs(shape, noise, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(*shape, generator=g)
    return x, (x + noise * torch.randn(*shape, generator=g)).clamp(0, 1)


def _hwc(t):
    return t.permute(1, 2, 0).double().numpy()


@pytest.mark.parametrize("shape,noise", [((3, 3, 32, 32), 0.05), ((2, 3, 24, 40), 0.2), ((2, 1, 64, 64), 0.01)])
def test_psnr_and_ssim_match_scikit_image(shape, noise):
    x, y = _pairs(shape, noise, seed=sum(shape))
    ours_psnr, ours_ssim = psnr(x, y), ssim(x, y)
    for i in range(shape[0]):
        assert ours_psnr[i].item() == pytest.approx(peak_signal_noise_ratio(x[i].double().numpy(), y[i].double().numpy(),
                                                                            data_range=1.0), rel=1e-10)
        expected = structural_similarity(_hwc(x[i]), _hwc(y[i]), channel_axis=2, data_range=1.0,
                                         gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
        assert ours_ssim[i].item() == pytest.approx(expected, abs=1e-7)


def test_ssim_of_structured_images_and_edge_cases():
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 48), torch.linspace(0, 1, 48), indexing="ij")
    x = torch.stack([torch.sin(6 * xx) * 0.5 + 0.5, yy, xx * yy]).unsqueeze(0)
    y = (x * 0.8 + 0.1).clamp(0, 1)
    expected = structural_similarity(_hwc(x[0]), _hwc(y[0]), channel_axis=2, data_range=1.0,
                                     gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    assert ssim(x, y).item() == pytest.approx(expected, abs=1e-7)
    assert ssim(x, x).item() == pytest.approx(1.0, abs=1e-12)
    assert psnr(x, x).item() == float("inf")
    with pytest.raises(ValueError, match="at least 11 px"):
        ssim(x[..., :8, :8], y[..., :8, :8])
    with pytest.raises(ValueError, match="one shape"):
        psnr(x, y[..., :40])


def test_unit_range_clamps_overshoot():
    t = torch.tensor([-1.5, -1.0, 0.0, 1.0, 1.2])
    np.testing.assert_allclose(to_unit_range(t).numpy(), [0.0, 0.0, 0.5, 1.0, 1.0])
