"""The teacher: an exactly tractable image distribution, the known truth behind `dataset=teacher`.

A class-conditional mixture of independent per-pixel categoricals over the data's `L` levels,

    P(k) = sum_j pi_j prod_d theta_{j, d, k_d},

fitted by EM (Dempster, Laird, Rubin 1977) once per class to the digits it imitates, with a fixed seed, in
float64, so a load is deterministic. Its `log P(k)` is exact (a log-sum-exp over components), so every model
trained on its samples can be scored by `kl_to_truth = E_test[log P_teacher(x) - log p_model(x)]`: an exact
likelihood below the teacher's, or a bound above it, shows. Each component belongs to one class, and a sample
carries its component's class as its label, so label-based features (the domain classifier) work as on digits.
Pure torch on the CPU; `load_teacher` builds the dataset (`genbench.datasets.load_dataset("teacher")`).
"""

from __future__ import annotations

import math

import torch

from genbench.data import Dataset, DataSpec, load_digits_data, to_levels

ROW_CHUNK = 256  # images per block when scoring, so memory stays `components x chunk x D`


class CategoricalMixture:
    """A mixture of factorized categoricals over `D` pixels with `L` levels each.

    Args:
        log_weights: log mixing weights `(K,)`, summing to one.
        log_probs: per-component, per-pixel log probabilities of the levels `(K, D, L)`.
        labels: the class of each component `(K,)`.
    """

    def __init__(self, log_weights: torch.Tensor, log_probs: torch.Tensor, labels: torch.Tensor) -> None:
        self.log_weights, self.log_probs, self.labels = log_weights.double(), log_probs.double(), labels.long()
        self.components, self.dim, self.levels = log_probs.shape

    def component_log_likelihood(self, k: torch.Tensor) -> torch.Tensor:
        """`log prod_d theta_{j, d, k_d}` for every image and component: `(N, D)` levels -> `(N, K)`."""
        flat = self.log_probs.reshape(self.components, -1)  # (K, D * L)
        offsets = torch.arange(self.dim) * self.levels
        out = [flat[:, rows + offsets].sum(-1).T for rows in k.long().split(ROW_CHUNK)]  # (K, c, D) -> (c, K)
        return torch.cat(out)

    def log_prob_levels(self, k: torch.Tensor) -> torch.Tensor:
        """Exact `log P(k)` in nats per image `(N,)`, float64, for integer levels `(N, D)`."""
        return torch.logsumexp(self.component_log_likelihood(k) + self.log_weights, dim=1)

    def log_density(self, x: torch.Tensor) -> torch.Tensor:
        """DESIGN units: `log P(k) + D log L`, the log density on `[0, 1]^D` of pipeline values `x = k / (L - 1)`."""
        k = torch.round(x.detach().cpu().double().flatten(1) * (self.levels - 1)).clamp(0, self.levels - 1)
        return self.log_prob_levels(k.long()) + self.dim * math.log(self.levels)

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """`n` images as integer levels `(n, D)` and their labels `(n,)`, by inverse-CDF draws from `generator`."""
        component = torch.multinomial(self.log_weights.exp(), n, replacement=True, generator=generator)
        u = torch.rand(n, self.dim, generator=generator, dtype=torch.float64)
        cdf = self.log_probs.exp().cumsum(-1)  # (K, D, L)
        k = torch.empty(n, self.dim, dtype=torch.long)
        for j in component.unique().tolist():
            rows = (component == j).nonzero().squeeze(1)
            drawn = torch.searchsorted(cdf[j], u[rows].T.contiguous())  # (D, n_j)
            k[rows] = drawn.T.clamp(max=self.levels - 1)
        return k, self.labels[component]


def fit_mixture(
    k: torch.Tensor, levels: int, components: int, smoothing: float, iterations: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """EM for a mixture of factorized categoricals on integer images `(N, D)`.

    Starts from a random hard assignment drawn from `generator`; the M-step adds `smoothing` pseudo-counts to
    every level (a symmetric Dirichlet prior), so no level has probability zero.

    Returns:
        Log mixing weights `(K,)` and log level probabilities `(K, D, L)`, float64.
    """
    n, dim = k.shape
    flat_index = (k.long() + torch.arange(dim) * levels).flatten()  # (N * D,): pixel d at level l -> d * L + l
    resp = torch.nn.functional.one_hot(torch.randint(components, (n,), generator=generator), components).double()
    for _ in range(iterations):
        counts = torch.zeros(components, dim * levels, dtype=torch.float64)
        counts.index_add_(1, flat_index, resp.T.repeat_interleave(dim, dim=1))  # (K, D * L)
        counts = counts.view(components, dim, levels) + smoothing
        log_probs = torch.log(counts / counts.sum(-1, keepdim=True))
        log_weights = torch.log((resp.sum(0) + 1e-3) / (n + 1e-3 * components))
        mixture = CategoricalMixture(log_weights, log_probs, torch.zeros(components))
        joint = mixture.component_log_likelihood(k) + log_weights  # (N, K)
        resp = torch.softmax(joint, dim=1)
    return log_weights, log_probs


def fit_class_conditional(
    k: torch.Tensor,
    labels: torch.Tensor,
    levels: int,
    components_per_class: int,
    smoothing: float,
    iterations: int,
    seed: int,
) -> CategoricalMixture:
    """One mixture per class, weighted by the class frequencies: the teacher."""
    generator = torch.Generator().manual_seed(seed)
    classes = labels.unique().tolist()
    weights, probs, owners = [], [], []
    for c in classes:
        rows = k[labels == c]
        log_w, log_p = fit_mixture(rows, levels, components_per_class, smoothing, iterations, generator)
        weights.append(log_w + math.log(len(rows) / len(k)))
        probs.append(log_p)
        owners.append(torch.full((components_per_class,), c))
    log_weights = torch.cat(weights)
    return CategoricalMixture(log_weights - torch.logsumexp(log_weights, 0), torch.cat(probs), torch.cat(owners))


TEACHER_SIDES = {"teacher": 8, "teacher28": 28}
TEACHER_EM_ITERATIONS = 30


def load_teacher(
    name: str = "teacher",
    n_train: int = 10_000,
    n_valid: int = 1_000,
    n_test: int = 2_000,
    components_per_class: int = 4,
    smoothing: float = 0.1,
    seed: int = 0,
) -> Dataset:
    """Images sampled from a known, exactly tractable teacher (genbench/teacher.py) fitted to the digits.

    `teacher` is 8x8 with L = 17, like digits, fitted to the digits train split; `teacher28` is MNIST-shaped,
    28x28 with L = 256, fitted to the same digits resized bilinearly to 28x28 (only embedded data, so it works
    offline). Train, validation and test splits are fresh samples of the teacher (seed `seed + 1`);
    `density.log_density(x)` is the teacher's exact log-likelihood in DESIGN units.
    """
    side = TEACHER_SIDES[name]
    digits = load_digits_data()
    levels = 17 if side == 8 else 256
    images = digits.train
    if side != 8:
        images = torch.nn.functional.interpolate(images, size=(side, side), mode="bilinear", align_corners=False)
    k = to_levels(images.clamp(0, 1), levels).flatten(1)  # (N, D)
    teacher = fit_class_conditional(
        k, digits.train_labels, levels, components_per_class, smoothing, TEACHER_EM_ITERATIONS, seed
    )
    drawn, labels = teacher.sample(n_train + n_valid + n_test, torch.Generator().manual_seed(seed + 1))
    x = (drawn.float() / (levels - 1)).view(-1, 1, side, side)  # (N, 1, H, W)
    cuts = (n_train, n_train + n_valid)
    fitted = "digits train split" + ("" if side == 8 else f", resized bilinearly to {side}x{side}")
    spec = DataSpec(
        name=name,
        shape=(1, side, side),
        levels=levels,
        value_range=(0.0, 1.0),
        n_train=n_train,
        n_test=n_test,
        n_valid=n_valid,
        source=(
            f"{name}: samples of a class-conditional mixture of {components_per_class} x 10 factorized categoricals "
            f"(L = {levels}, smoothing {smoothing:g}, EM {TEACHER_EM_ITERATIONS} iterations, seed {seed}) fitted "
            f"to the {fitted}; splits {n_train} / {n_valid} / {n_test} drawn with seed {seed + 1}; exact log P(k)"
        ),
        num_classes=10,
    )
    return Dataset(
        spec,
        x[: cuts[0]],
        x[cuts[1] :],
        labels[: cuts[0]],
        labels[cuts[1] :],
        density=teacher,
        valid=x[cuts[0] : cuts[1]],
        valid_labels=labels[cuts[0] : cuts[1]],
    )
