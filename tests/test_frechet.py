"""The Fréchet distance against closed forms and pytorch-fid; the sample route against the d x d computation;
the bootstrap interval against explicit resampling."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
from pytorch_fid.fid_score import calculate_frechet_distance
from scipy.stats import ortho_group

from genbench.metrics import frechet
from genbench.metrics.frechet import fid_bootstrap, frechet_distance, frechet_distance_features, statistics


def random_cov(rng: np.random.Generator, d: int, n: int) -> np.ndarray:
    a = rng.standard_normal((d, n))
    return a @ a.T / n  # rank min(d, n)


def correlated_features(rng: np.random.Generator, n: int, d: int, shift: float = 0.0) -> np.ndarray:
    mixing = rng.standard_normal((d, d)) / np.sqrt(d)
    return rng.standard_normal((n, d)) @ mixing + shift


def eigh_reference(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    """The d x d computation through a full eigendecomposition of S1 (genbench's singular path until now)."""
    w, v = np.linalg.eigh(s1)
    factor = v * np.sqrt(np.clip(w, 0.0, None))
    eig = np.linalg.eigvalsh(factor.T @ s2 @ factor)
    tr_sqrt = np.sqrt(eig[eig > max(eig.max(), 0) * len(eig) * np.finfo(np.float64).eps]).sum()
    return float((mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt)


# ----------------------------------------------------------------------------- the covariance route


def test_statistics_match_numpy_cov() -> None:
    x = np.random.default_rng(0).standard_normal((50, 7)).astype(np.float32)
    mu, sigma = statistics(x)
    assert mu.dtype == sigma.dtype == np.float64
    np.testing.assert_allclose(mu, x.astype(np.float64).mean(0), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(x.astype(np.float64), rowvar=False), rtol=1e-10)


@pytest.mark.parametrize("n", [200, 30])  # full rank, and singular (30 samples in 64-d)
@pytest.mark.parametrize("device", [None, "cpu"])  # numpy route and torch float64 route
def test_fid_of_a_set_with_itself_is_zero(n: int, device: str | None) -> None:
    x = np.random.default_rng(1).standard_normal((n, 64)) * 3.0 + 1.0
    mu, sigma = statistics(x)
    assert abs(frechet_distance(mu, sigma, mu, sigma, device=device)) < 1e-6
    assert abs(frechet_distance_features(x, x, device=device)) < 1e-10 * np.trace(sigma)


@pytest.mark.parametrize("device", [None, "cpu"])
def test_commuting_covariances_closed_form(device: str | None) -> None:
    # S1 = Q diag(a) Q^T, S2 = Q diag(b) Q^T commute: tr sqrt(S1 S2) = sum sqrt(a b), so
    # d^2 = |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2; zeros in a, b make both singular.
    rng = np.random.default_rng(2)
    d = 40
    q = ortho_group.rvs(d, random_state=3)
    a, b = rng.uniform(0.1, 4, d), rng.uniform(0.1, 4, d)
    a[:5], b[-5:] = 0.0, 0.0
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    got = frechet_distance(mu1, q @ np.diag(a) @ q.T, mu2, q @ np.diag(b) @ q.T, device=device)
    assert got == pytest.approx(expected, rel=1e-8)
    # equal covariances: only the means differ
    s = q @ np.diag(a) @ q.T
    assert frechet_distance(mu1, s, mu2, s, device=device) == pytest.approx(np.sum((mu1 - mu2) ** 2), rel=1e-6)


def check_against_pytorch_fid(d: int, n1: int, n2: int, seed: int, torch_too: bool) -> None:
    rng = np.random.default_rng(seed)
    s1, s2 = random_cov(rng, d, n1), random_cov(rng, d, n2)
    mu1, mu2 = rng.standard_normal(d) * 0.1, rng.standard_normal(d) * 0.1
    expected = calculate_frechet_distance(mu1, s1, mu2, s2)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-6)
    if torch_too:
        assert frechet_distance(mu1, s1, mu2, s2, device="cpu") == pytest.approx(expected, rel=1e-6)


@pytest.mark.filterwarnings("ignore:The `disp` argument is deprecated:DeprecationWarning")
def test_agrees_with_pytorch_fid_512() -> None:
    check_against_pytorch_fid(512, 600, 1000, seed=4, torch_too=True)


@pytest.mark.slow  # pytorch-fid's sqrtm at 2048-d: ~12 s on an idle 2-core CPU, over 60 s on a busy one
@pytest.mark.filterwarnings("ignore:The `disp` argument is deprecated:DeprecationWarning")
def test_agrees_with_pytorch_fid_2048() -> None:
    check_against_pytorch_fid(2048, 2500, 3000, seed=5, torch_too=False)


def test_singular_covariances_torch_and_numpy_agree() -> None:
    rng = np.random.default_rng(5)
    s1, s2 = random_cov(rng, 128, 40), random_cov(rng, 128, 60)  # both rank-deficient: pivoted Cholesky
    mu = np.zeros(128)
    a = frechet_distance(mu, s1, mu, s2)
    assert a == pytest.approx(eigh_reference(mu, s1, mu, s2), rel=1e-8)
    assert frechet_distance(mu, s1, mu, s2, device="cpu") == pytest.approx(a, rel=1e-7)
    assert frechet_distance(mu, s2, mu, s1) == pytest.approx(a, rel=1e-7)  # symmetric
    s3 = random_cov(rng, 128, 400)  # one singular, one regular: the regular one is factored
    assert frechet_distance(mu, s1, mu, s3) == pytest.approx(eigh_reference(mu, s1, mu, s3), rel=1e-8)


def test_pivoted_factor_reproduces_a_singular_covariance() -> None:
    sigma = random_cov(np.random.default_rng(6), 50, 12)  # rank 12
    factor = frechet._pivoted_factor(sigma)
    assert factor.shape == (50, 12)
    np.testing.assert_allclose(factor @ factor.T, sigma, atol=1e-12 * np.abs(sigma).max())


def test_shape_mismatch_is_refused() -> None:
    with pytest.raises(ValueError, match="shape mismatch"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match="dimensions differ"):
        frechet_distance_features(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="NaN or inf"):
        frechet_distance_features(np.full((5, 3), np.nan), np.zeros((5, 3)))


# ----------------------------------------------------------------------------- the sample route


def test_sample_route_closed_form() -> None:
    # Centred features U diag(s) V^T (U orthonormal, orthogonal to the ones vector) have covariance
    # V diag(s^2) V^T / (n - 1); two sets sharing V commute, so
    # d^2 = |mu1 - mu2|^2 + sum (s / sqrt(n1 - 1) - t / sqrt(n2 - 1))^2.
    rng = np.random.default_rng(7)
    n1, n2, d, r = 30, 45, 200, 20  # rank 20 in 200-d: singular far beyond pytorch-fid's reach
    v = np.linalg.qr(rng.standard_normal((d, r)))[0]

    def centred_basis(n: int) -> np.ndarray:
        basis = np.linalg.qr(np.column_stack([np.ones(n), rng.standard_normal((n, r))]))[0]
        return basis[:, 1:]  # orthonormal columns orthogonal to the ones vector: the rows have mean 0

    s, t = rng.uniform(0.5, 3.0, r), rng.uniform(0.5, 3.0, r)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    x1 = centred_basis(n1) * s @ v.T + mu1
    x2 = centred_basis(n2) * t @ v.T + mu2
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((s / np.sqrt(n1 - 1) - t / np.sqrt(n2 - 1)) ** 2)
    assert frechet_distance_features(x1, x2) == pytest.approx(expected, rel=1e-10)
    assert frechet_distance_features(x1, x2, device="cpu") == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize(("n1", "n2", "d"), [(60, 80, 256), (40, 300, 128), (200, 250, 1024)])
def test_sample_route_equals_the_d_by_d_computation(n1: int, n2: int, d: int, monkeypatch) -> None:
    rng = np.random.default_rng(n1 + d)
    x1, x2 = correlated_features(rng, n1, d), correlated_features(rng, n2, d, shift=0.05)
    (mu1, s1), (mu2, s2) = statistics(x1), statistics(x2)
    reference = eigh_reference(mu1, s1, mu2, s2)
    monkeypatch.setattr(frechet, "_sample_route_is_cheaper", lambda n1, n2, d: True)
    assert frechet_distance_features(x1, x2) == pytest.approx(reference, rel=1e-8)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(reference, rel=1e-8)


def test_zero_variance_features_with_many_samples() -> None:
    rng = np.random.default_rng(8)
    x1, x2 = correlated_features(rng, 300, 64), correlated_features(rng, 300, 64, shift=0.1)
    x1[:, :10] = 0.0  # dead units: singular covariances although n > d
    x2[:, :10] = 0.0
    (mu1, s1), (mu2, s2) = statistics(x1), statistics(x2)
    reference = eigh_reference(mu1, s1, mu2, s2)
    assert frechet_distance_features(x1, x2) == pytest.approx(reference, rel=1e-8)  # covariance route
    assert frechet_distance_features(x1, x2, moments2=(mu2, s2)) == pytest.approx(reference, rel=1e-8)


def test_route_choice() -> None:
    assert frechet._sample_route_is_cheaper(500, 500, 2048)
    assert not frechet._sample_route_is_cheaper(3000, 3000, 2048)


# ----------------------------------------------------------------------------- the bootstrap interval


@pytest.mark.parametrize(("n", "d"), [(30, 64), (60, 5)])  # sample route, covariance route
def test_bootstrap_values_equal_explicit_resampling(n: int, d: int) -> None:
    rng = np.random.default_rng(9)
    x1, x2 = correlated_features(rng, n, d), correlated_features(rng, n + 7, d, shift=0.2)
    result = fid_bootstrap(x1, x2, n_resamples=6, seed=11)
    draws = np.random.default_rng(11)
    for value in result.values:
        i1, i2 = draws.integers(0, len(x1), len(x1)), draws.integers(0, len(x2), len(x2))
        (mu1, s1), (mu2, s2) = statistics(x1[i1]), statistics(x2[i2])
        assert value == pytest.approx(eigh_reference(mu1, s1, mu2, s2), rel=1e-8)
    assert result.fid == pytest.approx(frechet_distance_features(x1, x2), rel=1e-12)
    assert result.n_resamples == 6 and result.level == 0.95


def test_bootstrap_is_reproducible_and_seeded() -> None:
    rng = np.random.default_rng(10)
    x1, x2 = rng.standard_normal((40, 6)), rng.standard_normal((50, 6))
    a, b = fid_bootstrap(x1, x2, 20, seed=1), fid_bootstrap(x1, x2, 20, seed=1)
    np.testing.assert_array_equal(a.values, b.values)
    assert (a.low, a.high) == (b.low, b.high)
    assert not np.array_equal(a.values, fid_bootstrap(x1, x2, 20, seed=2).values)
    assert a.low == pytest.approx(np.quantile(a.values, 0.025))
    assert a.high == pytest.approx(np.quantile(a.values, 0.975))


def test_bootstrap_interval_shrinks_with_n_and_covers_a_clear_difference() -> None:
    rng = np.random.default_rng(12)
    widths = []
    for n in (50, 400):  # two samples of one Gaussian: the interval narrows (about as 1 / n here)
        result = fid_bootstrap(rng.standard_normal((n, 4)), rng.standard_normal((n, 4)), 200, seed=0)
        widths.append(result.high - result.low)
    assert widths[1] < 0.5 * widths[0]
    # means 2 apart in every coordinate: FID ~ 16, dominated by |mu1 - mu2|^2, and its interval holds it
    result = fid_bootstrap(rng.standard_normal((300, 4)), rng.standard_normal((300, 4)) + 2.0, 200, seed=0)
    assert result.low < result.fid < result.high and result.fid == pytest.approx(16.0, rel=0.2)


def test_bootstrap_refuses_bad_arguments() -> None:
    x = np.zeros((10, 3)) + np.arange(3)
    with pytest.raises(ValueError, match="n_resamples"):
        fid_bootstrap(x, x, 1)
    with pytest.raises(ValueError, match="dimensions differ"):
        fid_bootstrap(x, np.zeros((10, 4)), 5)


def test_nuclear_norm_is_the_trace_of_the_square_root() -> None:
    # tr sqrt(S1 S2) = |A1 A2^T|_* for S_i = A_i^T A_i: the identity behind the sample route
    rng = np.random.default_rng(13)
    a1, a2 = rng.standard_normal((7, 12)), rng.standard_normal((9, 12))
    s1, s2 = a1.T @ a1, a2.T @ a2
    root = scipy.linalg.sqrtm(scipy.linalg.sqrtm(s1) @ s2 @ scipy.linalg.sqrtm(s1))
    assert frechet._nuclear_norm(a1 @ a2.T) == pytest.approx(np.trace(root).real, rel=1e-6)
