"""Improved precision and recall (Kynkäänniemi et al. 2019, "Improved precision and recall metric for assessing
generative models").

Each set of features approximates its manifold by the union of balls around its points, each ball reaching the
point's k-th nearest neighbour within the set (k = 3 by default). Precision is the fraction of generated points
inside the reference manifold (are samples realistic?); recall is the fraction of reference points inside the
generated manifold (is the data's variety covered?). A generator that collapses onto one mode keeps a high
precision and loses recall.

Exact and fast. Every decision (which point is the k-th neighbour, whether a point lies in a ball) is the one
that float64 squared distances `sum_k (a_k - b_k)^2` give, but almost all of them are taken on float32 blocks
`|a|^2 + |b|^2 - 2 a.b` (one matrix product per block, k-th neighbours by `topk`, ball tests by one row or
column minimum). A float32 value carries a proven error bound (below), so a decision is re-checked in float64
only where the float32 value lies within that bound of the threshold (on correlated Gaussian features: 0.05% of
the points at 64-d, 1.5% at 2048-d). Exact float64 radii are computed only for the balls such a re-check
touches: a float32 radius is within its row's bound of the exact one, and the ball tests allow for both. In high
dimension the k-NN products cover only the upper triangle of each symmetric distance matrix, and one
cross-distance block serves both precision (its row minima) and recall (its column minima): two thirds of the
products of three full distance matrices.

Error bound: for features scaled (by a power of two, which is exact) to norms of order one, a float32 dot
product over d terms errs by at most gamma_d |a| |b| (Higham 2002, sec. 3.1; any summation order, FMA or not),
and the inputs' rounding to float32 adds 2u(|a| + |b|)^2, so |approx - exact| <= (d + 16) u (|a| + |b| + s)^2
with u = 2^-24 and s the square root of the largest radius folded into the block, covering every rounding step.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import numpy as np
import torch

UNIT_ROUNDOFF = 2.0**-24  # float32
EXTRA_NEIGHBOURS = 4  # topk keeps k + 1 + this many per row, so ties near the k-th neighbour resolve without a rescan
BLOCK_BYTES = 64 * 2**20  # one float32 distance block, at most (when `chunk` is not given)
EXACT_ELEMENTS = 2**16  # float64 difference elements per exact re-check step
SYMMETRIC_MIN_DIM = 256  # from here on, half a k-NN product saves more than transposing its strips costs


@contextlib.contextmanager
def _full_float32_matmul() -> Iterator[None]:
    """The error bound assumes true float32 products: no TF32 or bfloat16 shortcuts while we compute."""
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


class _Points:
    """One feature set, scaled: its rows as given (float32 or float64: the exact side), a float32 copy (the same
    tensor when the input is float32), float64 squared norms and norms."""

    def __init__(self, x: torch.Tensor) -> None:
        self.exact = x
        self.x32 = x if x.dtype == torch.float32 else x.float()
        self.sq = torch.empty(len(x), dtype=torch.float64, device=x.device)
        step = max(1, EXACT_ELEMENTS // max(x.shape[1], 1))
        for s in range(0, len(x), step):  # in float64, in small steps (one big float64 copy is slower)
            rows = x[s : s + step].to(torch.float64, copy=True)  # never square the features in place
            self.sq[s : s + step] = rows.square_().sum(1)
        self.norm = self.sq.sqrt()
        self.n, self.d = x.shape

    def bound(self, rows: torch.Tensor | slice, other_max_norm: float, sqrt_radius: float = 0.0) -> torch.Tensor:
        """Float64 bound on the error of a float32 distance value for these rows (see the module docstring)."""
        return (self.d + 16) * UNIT_ROUNDOFF * (self.norm[rows] + other_max_norm + sqrt_radius) ** 2


def _exact_pairs(x: torch.Tensor, y: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Exact squared distances `sum_k (x_k - y_k)^2` of the pairs (x[rows[p]], y[cols[p]]), in float64, in small
    steps (large temporaries cost more in page faults than in arithmetic)."""
    out = torch.empty(len(rows), dtype=torch.float64, device=x.device)
    step = max(1, EXACT_ELEMENTS // x.shape[1])
    for s in range(0, len(rows), step):
        diff = y[cols[s : s + step]].double()  # float32 rows are exact in float64
        diff.sub_(x[rows[s : s + step]])
        out[s : s + step] = diff.square_().sum(-1)
    return out


def _block_rows(n_cols: int, chunk: int | None) -> int:
    return max(1, int(chunk) if chunk else BLOCK_BYTES // (4 * 2 * max(n_cols, 1)))  # two float32 blocks live


# ----------------------------------------------------------------------------- k-NN balls


def _merge_topk(
    best_v: torch.Tensor, best_i: torch.Tensor, v: torch.Tensor, i: torch.Tensor, keep: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The `keep` smallest of a row's running best and a new block's candidates, sorted ascending."""
    v, pos = torch.cat([best_v, v], 1).topk(keep, dim=1, largest=False, sorted=True)
    return v, torch.cat([best_i, i], 1).gather(1, pos)


def _approx_neighbours(p: _Points, keep: int, strip: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For every row, the `keep` smallest float32 squared distances `|x_i|^2 + |x_j|^2 - 2 x_i.x_j` and their
    columns, ascending, from strips of `strip` rows.

    In high dimension the product dominates, so a strip of rows I is multiplied only with the columns from I on
    (the upper triangle, about half the work): its rows take their neighbours among those columns, and its
    transpose serves the later rows, whose neighbours in I it holds. In low dimension the transposes would cost
    more than they save, and each strip is multiplied with every column.
    """
    n, device = p.n, p.x32.device
    best_v = torch.full((n, keep), math.inf, dtype=torch.float32, device=device)
    best_i = torch.zeros((n, keep), dtype=torch.int64, device=device)
    sq32 = p.sq.float()
    symmetric = p.d >= SYMMETRIC_MIN_DIM and n > strip
    buffer = torch.empty(min(strip, n) * n, dtype=torch.float32, device=device)  # reused: no page faults per strip
    transposed = torch.empty_like(buffer) if symmetric else None

    def update(rows: slice, values: torch.Tensor, first_col: int) -> None:
        v, idx = values.topk(min(keep, values.shape[1]), dim=1, largest=False, sorted=True)
        best_v[rows], best_i[rows] = _merge_topk(best_v[rows], best_i[rows], v, idx + first_col, keep)

    for i in range(0, n, strip):
        rows, first = slice(i, min(i + strip, n)), i if symmetric else 0
        r, width = rows.stop - i, n - first
        values = buffer[: r * width].view(r, width)
        torch.addmm(sq32[first:], p.x32[rows], p.x32[first:].T, alpha=-2.0, out=values)
        values.add_(sq32[rows, None])  # (r, width) squared distances
        update(rows, values, first)
        if symmetric and rows.stop < n:  # rows after this strip: their neighbours among its rows
            below = transposed[: (n - rows.stop) * r].view(n - rows.stop, r).copy_(values[:, r:].T)
            update(slice(rows.stop, n), below, i)
    return best_v, best_i


class _Balls:
    """The k-NN balls of one set: float32 radii for all points, exact float64 radii computed only on demand.

    The approximate radius (the (k+1)-th smallest float32 distance, the point itself first) is within the
    row's error bound of the exact one, since an order statistic moves no more than the values it is taken from.
    """

    def __init__(self, pts: _Points, k: int, strip: int) -> None:
        if not 0 < k < pts.n:
            raise ValueError(f"k = {k} must lie in 1..{pts.n - 1} for {pts.n} points")
        self.pts, self.k = pts, k
        self.keep = min(pts.n, k + 1 + EXTRA_NEIGHBOURS)
        best_v, self.best_i = _approx_neighbours(pts, self.keep, strip)
        self.approx = best_v.double()  # (N, keep) ascending, each within `tol` of its exact distance
        self.radii = self.approx[:, k]  # within `tol` of the exact radii
        self.tol = pts.bound(slice(None), float(pts.norm.max()))
        self.exact = torch.full_like(self.radii, math.nan)

    def exact_radii(self, rows: torch.Tensor) -> torch.Tensor:
        """Exact float64 radii of `rows`: distances recomputed in float64 for the few candidates that can be the
        (k+1)-th nearest, i.e. whose float32 distance lies within twice the bound of the float32 radius."""
        todo = rows[torch.isnan(self.exact[rows])].unique()
        if len(todo):
            self.exact[todo] = self._compute(todo)
        return self.exact[rows]

    def _compute(self, rows: torch.Tensor) -> torch.Tensor:
        p, k = self.pts, self.k
        approx, best_i = self.approx[rows], self.best_i[rows]
        limit = self.radii[rows] + 2.0 * self.tol[rows]  # no point beyond can be among the k + 1 nearest
        own = best_i == rows[:, None]  # a point's distance to itself is 0 without computing
        r, pos = torch.nonzero((approx <= limit[:, None]) & ~own, as_tuple=True)  # a prefix of each sorted row
        exact = torch.full_like(approx, math.inf)
        exact[own] = 0.0
        exact[r, pos] = _exact_pairs(p.exact, p.exact, rows[r], best_i[r, pos])
        radii = exact.kthvalue(k + 1, dim=1).values
        # settled unless a point outside the topk may lie under the limit (and the radius is not already 0)
        unsettled = (approx[:, -1] <= limit) & (radii > 0) & (self.keep < p.n)
        for i in torch.nonzero(unsettled).flatten().tolist():  # many near-ties: rescan the row
            row = int(rows[i])
            values = torch.add(p.sq.float(), p.x32 @ p.x32[row], alpha=-2.0).double() + p.sq[row]
            cols = torch.nonzero(values <= limit[i]).flatten()
            radii[i] = _exact_pairs(p.exact, p.exact, torch.full_like(cols, row), cols).kthvalue(k + 1).values
        return radii


# ----------------------------------------------------------------------------- ball membership


def _inside_exact(pts: _Points, rows: torch.Tensor, balls: _Balls, chunk: int | None) -> torch.Tensor:
    """Whether each of pts' `rows` lies in one of `balls`, deciding every near-boundary pair in float64."""
    centres = balls.pts
    inside = torch.zeros(len(rows), dtype=torch.bool, device=centres.x32.device)
    bias = (centres.sq - balls.radii).float()
    c_max, r_max = float(centres.norm.max()), float(balls.radii.max().sqrt())
    block = _block_rows(centres.n, chunk)
    for s in range(0, len(rows), block):
        idx = rows[s : s + block]
        values = torch.addmm(bias, pts.x32[idx], centres.x32.T, alpha=-2.0).double() + pts.sq[idx, None]
        tol = pts.bound(idx, c_max, r_max) + float(balls.tol.max())  # distance and radius both approximate
        near_r, near_c = torch.nonzero(values <= tol[:, None], as_tuple=True)
        hit = _exact_pairs(pts.exact, centres.exact, idx[near_r], near_c) <= balls.exact_radii(near_c)
        inside[s + near_r[hit]] = True
    return inside


def _cross_pass(gen: _Points, ref: _Points, gen_balls: _Balls, ref_balls: _Balls, chunk: int | None):
    """Precision's and recall's ball tests from one float32 block per slice of generated rows.

    With P = |c|^2 - r_ref - 2 g.c, a generated row's min over P + |g|^2 is its min over (distance - ball
    radius) of the reference balls; a reference column's min over P + |g|^2 - r_gen, plus r_ref, is the same for
    the generated balls. Returns +1 (inside), -1 (outside) or 0 (undecided in float32) per generated and per
    reference point.
    """
    r_gen, r_ref = gen_balls.radii, ref_balls.radii
    bias_ref, bias_gen = (ref.sq - r_ref).float(), (gen.sq - r_gen).float()
    col_min = torch.full((ref.n,), math.inf, dtype=torch.float32, device=r_ref.device)
    gen_margin = torch.empty(gen.n, dtype=torch.float64, device=r_gen.device)
    block = _block_rows(ref.n, chunk)
    buffer = torch.empty(min(block, gen.n) * ref.n, dtype=torch.float32, device=r_ref.device)
    for s in range(0, gen.n, block):
        rows = slice(s, min(s + block, gen.n))
        values = buffer[: (rows.stop - s) * ref.n].view(-1, ref.n)
        torch.addmm(bias_ref, gen.x32[rows], ref.x32.T, alpha=-2.0, out=values)  # (r, N_ref)
        gen_margin[rows] = values.amin(1).double() + gen.sq[rows]
        torch.minimum(col_min, values.add_(bias_gen[rows, None]).amin(0), out=col_min)
    ref_margin = col_min.double() + r_ref
    s_radius = float(torch.cat([r_gen, r_ref]).max().sqrt())
    gen_tol = gen.bound(slice(None), float(ref.norm.max()), s_radius) + float(ref_balls.tol.max())
    ref_tol = ref.bound(slice(None), float(gen.norm.max()), s_radius) + float(gen_balls.tol.max())

    def status(margin: torch.Tensor, tol: torch.Tensor) -> torch.Tensor:
        return (margin <= -tol).to(torch.int8) - (margin > tol).to(torch.int8)

    return status(gen_margin, gen_tol), status(ref_margin, ref_tol)


def _settle(status: torch.Tensor, pts: _Points, balls: _Balls, chunk: int | None) -> float:
    """Fraction inside: the float32 verdicts, with the undecided points decided exactly."""
    undecided = torch.nonzero(status == 0).flatten()
    inside = int((status > 0).sum()) + int(_inside_exact(pts, undecided, balls, chunk).sum())
    return inside / pts.n


# ----------------------------------------------------------------------------- the metric


def _as_features(a: np.ndarray | torch.Tensor, device: str | torch.device) -> torch.Tensor:
    """float32 and float64 stay as they are (float32 rows are exact in float64); other types become float64."""
    t = torch.as_tensor(a, device=device)
    if t.dtype in (torch.float16, torch.bfloat16):
        return t.float()
    return t if t.dtype in (torch.float32, torch.float64) else t.double()


def _power_of_two_scale(*arrays: torch.Tensor) -> float:
    """A power of two that brings every row norm under 1 (exact, and float32 stays far from overflow)."""
    biggest = max(max(float(a.amax()), -float(a.amin())) for a in arrays) * math.sqrt(arrays[0].shape[1])
    if not math.isfinite(biggest):
        raise ValueError("precision/recall: features contain NaN or inf")
    return 2.0 ** -math.ceil(math.log2(biggest)) if biggest > 0 else 1.0


def _strip_rows(n: int, chunk: int | None) -> int:
    """Rows per k-NN strip: about n / 8 (the symmetric half then saves ~44%), within the block memory budget."""
    return max(1, min(_block_rows(n, chunk), max(256, -(-n // 8))))


def knn_radii(x: torch.Tensor, k: int, chunk: int | None = None) -> torch.Tensor:
    """Squared distance from each row of x (N, d) to its k-th nearest other row, exact in float64: (N,)."""
    x = _as_features(x, x.device if isinstance(x, torch.Tensor) else "cpu")
    scale = _power_of_two_scale(x)
    with _full_float32_matmul():
        balls = _Balls(_Points(x * scale), k, _strip_rows(len(x), chunk))
        radii = balls.exact_radii(torch.arange(len(x), device=x.device))
    return radii / scale**2


def precision_recall(
    ref: np.ndarray, gen: np.ndarray, k: int = 3, chunk: int | None = None, device: str | torch.device = "cpu"
) -> tuple[float, float]:
    """Precision and recall of generated features `gen` (N, d) against reference features `ref` (M, d).

    Args:
        ref, gen: feature arrays (use equal sizes: the radii shrink as a set grows).
        k: the nearest neighbour that sets each ball's radius.
        chunk: rows per distance block; None sizes blocks to about 64 MiB.
        device: where distances are computed.

    Returns:
        (precision, recall), fractions in [0, 1], exactly those of float64 distances.
    """
    ref_t, gen_t = _as_features(ref, device), _as_features(gen, device)
    if ref_t.ndim != 2 or gen_t.shape[1:] != ref_t.shape[1:]:
        raise ValueError(f"precision/recall needs feature arrays (N, d) of one d; got {ref_t.shape}, {gen_t.shape}")
    if ref_t.dtype != gen_t.dtype:
        ref_t, gen_t = ref_t.double(), gen_t.double()
    scale = _power_of_two_scale(ref_t, gen_t)
    real, fake = _Points(ref_t * scale), _Points(gen_t * scale)
    with _full_float32_matmul():
        real_balls = _Balls(real, k, _strip_rows(real.n, chunk))
        fake_balls = _Balls(fake, k, _strip_rows(fake.n, chunk))
        gen_status, ref_status = _cross_pass(fake, real, fake_balls, real_balls, chunk)
        precision = _settle(gen_status, fake, real_balls, chunk)
        recall = _settle(ref_status, real, fake_balls, chunk)
    return precision, recall
