"""Float64 sufficient statistics merge exactly; the Fréchet distance stays finite and real."""
import numpy as np
import pytest

from hieratok.eval.feature_stats import FeatureStats, GaussianStats, is_stats_file, load_stats
from hieratok.eval.frechet import frechet_distance


def _reference_fid(mu1, s1, mu2, s2) -> float:
    """torch-fidelity's formula (eigenvalues of S1 S2), for well-conditioned inputs."""
    from torch_fidelity.metric_fid import fid_statistics_to_metric

    out = fid_statistics_to_metric({"mu": mu1, "sigma": s1}, {"mu": mu2, "sigma": s2}, verbose=False)
    return out["frechet_inception_distance"]


def test_shard_statistics_merge_exactly():
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(103, 16)) * 3 + 1
    whole = FeatureStats(16).update(feats)
    shards = [FeatureStats(16).update(feats[a:b]) for a, b in ((0, 10), (10, 11), (11, 64), (64, 103))]
    merged = FeatureStats.merged(shards)
    assert merged.n == whole.n == 103
    np.testing.assert_allclose(merged.sum, whole.sum, rtol=1e-13)
    np.testing.assert_allclose(merged.outer_sum, whole.outer_sum, rtol=1e-13)
    g = merged.gaussian()
    np.testing.assert_allclose(g.mu, feats.mean(0), rtol=1e-12)
    np.testing.assert_allclose(g.sigma, np.cov(feats, rowvar=False), rtol=1e-10, atol=1e-12)


def test_statistics_file_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    stats = FeatureStats(8, {"reference": {"path": "somewhere"}}).update(rng.normal(size=(20, 8)))
    path = stats.save(tmp_path / "s.npz")
    assert is_stats_file(path)
    back = load_stats(path)
    assert back.n == 20 and back.meta["reference"] == {"path": "somewhere"}
    np.testing.assert_array_equal(back.outer_sum, stats.outer_sum)
    np.savez(tmp_path / "musigma.npz", mu=np.zeros(8), sigma=np.eye(8))
    assert isinstance(load_stats(tmp_path / "musigma.npz"), GaussianStats)
    np.savez(tmp_path / "images.npz", np.zeros((2, 4, 4, 3), np.uint8))
    assert not is_stats_file(tmp_path / "images.npz")
    with pytest.raises(ValueError, match="not a statistics file"):
        load_stats(tmp_path / "images.npz")


def test_frechet_matches_torch_fidelity_when_well_conditioned():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(400, 32)), rng.normal(size=(400, 32)) * 1.5 + 0.3
    args = (a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert frechet_distance(*args) == pytest.approx(_reference_fid(*args), rel=1e-9)


@pytest.mark.parametrize("case", ["rank_deficient", "tiny_eigenvalues", "identical_singular"])
def test_frechet_is_finite_and_real_on_near_singular_covariances(case):
    rng = np.random.default_rng(3)
    d = 256
    if case == "rank_deficient":  # fewer samples than dimensions, as with small eval sets
        x, y = rng.normal(size=(5, d)), rng.normal(size=(7, d)) + 0.1
        s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
        mu1, mu2 = x.mean(0), y.mean(0)
    elif case == "tiny_eigenvalues":  # eigenvalues spanning 1e-14 .. 1: round-off makes some negative
        q, _ = np.linalg.qr(rng.normal(size=(d, d)))
        s1 = (q * np.logspace(-14, 0, d)) @ q.T
        s2 = (q[:, ::-1] * np.logspace(-14, 0, d)) @ q[:, ::-1].T
        mu1, mu2 = np.zeros(d), np.full(d, 1e-3)
    else:  # the same singular covariance twice: the distance is |mu1 - mu2|^2 exactly
        x = rng.normal(size=(4, d))
        s1 = s2 = np.cov(x, rowvar=False)
        mu1, mu2 = np.zeros(d), np.full(d, 0.01)
    fid = frechet_distance(mu1, s1, mu2, s2)
    assert isinstance(fid, float) and np.isfinite(fid) and fid >= 0
    if case == "identical_singular":
        assert fid == pytest.approx(d * 1e-4, abs=1e-6)
    else:  # the exact value of the eigen formulation, where it is real: within round-off
        ev = np.linalg.eigvals(s1 @ s2)
        exact = (mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.clip(ev.real, 0, None)).sum()
        assert fid == pytest.approx(exact, rel=1e-4, abs=1e-4)


def test_frechet_rejects_broken_inputs():
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(np.array([np.nan, 0]), np.eye(2), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="must be 4x4"):
        frechet_distance(np.zeros(4), np.eye(3), np.zeros(4), np.eye(4))
