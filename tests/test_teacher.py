"""The teacher (genbench/teacher.py) and `dataset=teacher`: an exact log P(k) checked by enumeration, EM that never
lowers the likelihood, deterministic splits, and kl_to_truth on images."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from omegaconf import OmegaConf

from genbench.datasets import load_dataset
from genbench.metrics import likelihood as lk
from genbench.metrics.context import EvalContext
from genbench.model import GenerativeModel
from genbench.teacher import CategoricalMixture, fit_class_conditional, fit_mixture


def tiny_mixture(seed: int = 0) -> CategoricalMixture:
    gen = torch.Generator().manual_seed(seed)
    log_weights = torch.log_softmax(torch.randn(3, generator=gen, dtype=torch.float64), 0)
    log_probs = torch.log_softmax(2 * torch.randn(3, 4, 5, generator=gen, dtype=torch.float64), -1)  # K=3, D=4, L=5
    return CategoricalMixture(log_weights, log_probs, torch.tensor([0, 1, 1]))


def test_log_prob_is_a_distribution_over_all_images_and_matches_the_definition() -> None:
    mix = tiny_mixture()
    images = torch.tensor(list(itertools.product(range(5), repeat=4)))  # all 5^4 images
    log_p = mix.log_prob_levels(images)
    assert float(torch.logsumexp(log_p, 0)) == pytest.approx(0.0, abs=1e-12)
    k = images[123]
    by_hand = sum(math.exp(mix.log_weights[j] + sum(mix.log_probs[j, d, k[d]] for d in range(4))) for j in range(3))
    assert float(log_p[123]) == pytest.approx(math.log(by_hand), rel=1e-12)
    # DESIGN units: pipeline values k / (L - 1), log P(k) + D log L
    assert float(mix.log_density(images[123:124].double() / 4)) == pytest.approx(math.log(by_hand) + 4 * math.log(5))


def test_samples_follow_the_distribution() -> None:
    mix = tiny_mixture(1)
    images = torch.tensor(list(itertools.product(range(5), repeat=4)))
    entropy = float(-(mix.log_prob_levels(images).exp() * mix.log_prob_levels(images)).sum())
    k, labels = mix.sample(20_000, torch.Generator().manual_seed(2))
    lp = mix.log_prob_levels(k)
    assert abs(float(-lp.mean()) - entropy) < 4 * float(lp.std()) / math.sqrt(len(lp))
    assert set(labels.tolist()) <= {0, 1}


def test_em_never_lowers_the_training_likelihood() -> None:
    k, _ = tiny_mixture(3).sample(400, torch.Generator().manual_seed(4))
    values = []
    for iterations in (1, 2, 4, 8, 16):
        log_w, log_p = fit_mixture(k, 5, 3, 1e-9, iterations, torch.Generator().manual_seed(5))
        values.append(float(CategoricalMixture(log_w, log_p, torch.zeros(3)).log_prob_levels(k).mean()))
    assert all(b >= a - 1e-9 for a, b in itertools.pairwise(values)), values
    labels = torch.zeros(len(k), dtype=torch.long)
    teacher = fit_class_conditional(k, labels, 5, 3, 1e-9, 16, seed=5)
    assert float(teacher.log_prob_levels(k).mean()) == pytest.approx(values[-1])


def test_teacher_dataset_is_digits_shaped_deterministic_and_has_a_validation_split() -> None:
    a = load_dataset("teacher", n_train=300, n_valid=50, n_test=100)
    b = load_dataset("teacher", n_train=300, n_valid=50, n_test=100)
    assert a.spec.shape == (1, 8, 8) and a.spec.levels == 17 and a.spec.num_classes == 10
    assert a.train.shape == (300, 1, 8, 8) and a.valid.shape == (50, 1, 8, 8) and a.test.shape == (100, 1, 8, 8)
    assert (a.spec.n_train, a.spec.n_valid, a.spec.n_test) == (300, 50, 100)  # what the record states
    assert torch.equal(a.valid_labels, b.valid_labels) and len(a.valid_labels) == 50
    assert torch.equal(a.test, b.test) and torch.equal(a.train_labels, b.train_labels)
    assert torch.equal(a.test * 16, (a.test * 16).round())  # values k / (L - 1)
    exact = a.density.log_density(a.test)
    assert exact.shape == (100,) and torch.isfinite(exact).all()
    assert -float(exact.mean() - 64 * math.log(17)) > 0  # -log P(k) > 0 nats


class TeacherItself(GenerativeModel):
    """A model whose exact density is the teacher's: its KL to the truth is zero."""

    likelihood = "exact"

    def __init__(self, spec: object, density: CategoricalMixture, shift: float = 0.0) -> None:
        super().__init__(spec)
        self.dummy = torch.nn.Parameter(torch.zeros(()))
        self.density, self.shift = density, shift

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return self.density.log_density(x) - self.shift


def test_kl_to_truth_on_images_is_zero_for_the_teacher_and_the_gap_of_a_worse_model() -> None:
    data = load_dataset("teacher", n_train=200, n_valid=20, n_test=100)
    cfg = OmegaConf.create({"likelihood": {"n_test": None, "batch_size": 64, "kl_to_truth": {"enabled": True}}})
    found = lk.evaluate(EvalContext(TeacherItself(data.spec, data.density), data, cfg))
    (kl,) = [m for m in found if m.name == "kl_to_truth"]
    assert kl.value == pytest.approx(0.0, abs=1e-9) and kl.extra["density_kind"] == "exact"
    worse = lk.evaluate(EvalContext(TeacherItself(data.spec, data.density, shift=1.5), data, cfg))
    assert next(m for m in worse if m.name == "kl_to_truth").value == pytest.approx(1.5)


@pytest.mark.parametrize("model", ["nice", "vae"])
def test_bench_on_the_teacher_records_kl_to_truth_with_its_density_kind(model: str, compose, tmp_path) -> None:
    from genbench.pipeline import bench

    overrides = [
        f"model={model}",
        "dataset=teacher",
        "dataset.n_train=200",
        "dataset.n_valid=20",
        "dataset.n_test=40",
        "train.max_steps=3",
        "eval=fast",
        "eval.fid.enabled=false",
        "eval.speed.enabled=false",
        "eval.likelihood.ais.enabled=false",
    ]
    record = bench(compose(overrides, out_dir=tmp_path / model))
    (kl,) = [m for m in record["metrics"] if m["name"] == "kl_to_truth"]
    assert kl["density_kind"] == {"nice": "exact", "vae": "lower_bound"}[model] and kl["n"] == 40
    assert kl["value"] > 0  # three training steps are far from the teacher
