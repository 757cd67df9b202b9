"""The training loop: determinism, resume after interruption, NaN guard, checkpoint safety."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from dummy_models import GaussianModel

from genbench import train as train_module
from genbench.data import load_toy2d
from genbench.errors import GenbenchError, NonFiniteLossError
from genbench.train import CHECKPOINT_NAME, TrainConfig, load_checkpoint, read_curve, seed_everything, train

DATA = load_toy2d("ring8", n_train=256, n_test=16)
META = {"model_target": "dummy_models.GaussianModel"}


def run(run_dir: Path, max_steps: int, seed: int = 0, **model_kwargs: object) -> GaussianModel:
    seed_everything(seed)
    model = GaussianModel(DATA.spec, **model_kwargs)
    model.configure_optimizers()
    cfg = TrainConfig(batch_size=32, max_steps=max_steps, checkpoint_every=5, log_every=1)
    train(model, DATA.train, cfg, run_dir, seed, META)
    return model


def test_same_seed_same_losses_and_different_seed_differs(tmp_path: Path) -> None:
    run(tmp_path / "a", 12, seed=3)
    run(tmp_path / "b", 12, seed=3)
    run(tmp_path / "c", 12, seed=4)
    curves = [read_curve(tmp_path / d / "curve.csv", 10**9) for d in "abc"]
    assert curves[0] == curves[1]
    assert curves[0] != curves[2]


def test_interrupted_run_resumes_to_the_same_state(tmp_path: Path) -> None:
    straight = run(tmp_path / "straight", 20)
    run(tmp_path / "split", 12)  # "killed" after 12 steps: last checkpoint at step 10
    ckpt = load_checkpoint(tmp_path / "split" / CHECKPOINT_NAME)
    assert ckpt["step"] == 12  # the final checkpoint of the short run
    resumed = run(tmp_path / "split", 20)
    assert load_checkpoint(tmp_path / "split" / CHECKPOINT_NAME)["step"] == 20
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert read_curve(tmp_path / "straight" / "curve.csv", 99) == read_curve(tmp_path / "split" / "curve.csv", 99)


def test_kill_between_checkpoints_resumes_from_the_last_one(tmp_path: Path) -> None:
    straight = run(tmp_path / "straight", 15)

    class Killed(Exception):
        pass

    class KilledAt13(GaussianModel):
        def train_step(self, x: torch.Tensor) -> dict[str, float]:
            if int(self.steps) == 12:
                raise Killed
            return super().train_step(x)

    seed_everything(0)
    model = KilledAt13(DATA.spec)
    model.configure_optimizers()
    with pytest.raises(Killed):
        train(model, DATA.train, TrainConfig(32, 15, checkpoint_every=5, log_every=1), tmp_path / "k", 0, META)
    assert load_checkpoint(tmp_path / "k" / CHECKPOINT_NAME)["step"] == 10
    resumed = run(tmp_path / "k", 15)
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_nan_guard_stops_and_keeps_last_good_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(NonFiniteLossError, match=r"at step 8.*step 5"):
        run(tmp_path, 20, nan_at_step=8)
    assert load_checkpoint(tmp_path / CHECKPOINT_NAME)["step"] == 5


def test_corrupt_and_foreign_checkpoints_are_refused(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint at all")
    with pytest.raises(GenbenchError, match="corrupt"):
        load_checkpoint(corrupt)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(GenbenchError, match="not a genbench checkpoint"):
        load_checkpoint(foreign)


# ----------------------------------------------------------------------------- device-clean loop


class TensorGaussian(GaussianModel):
    """GaussianModel returning its loss as a 0-dim tensor (as device-clean models do) instead of a float."""

    def train_step(self, x: torch.Tensor) -> dict[str, torch.Tensor | float]:
        loss = -self.log_prob(x + 0.01 * torch.randn_like(x)).mean()
        self.optimizers["adam"].zero_grad()
        loss.backward()
        self.optimizers["adam"].step()
        self.steps += 1
        return {"loss": loss.detach(), "scale": self.log_std.detach().exp().mean()}


class NanWeightsAt(TensorGaussian):
    """Finite losses, but the weights turn NaN in step `at`, after its loss (just before a checkpoint)."""

    at = 10

    def train_step(self, x: torch.Tensor) -> dict[str, torch.Tensor | float]:
        out = super().train_step(x)
        if int(self.steps) == self.at:
            with torch.no_grad():
                self.mean.fill_(float("nan"))
        return out


class NanTensorAt(TensorGaussian):
    def train_step(self, x: torch.Tensor) -> dict[str, torch.Tensor | float]:
        out = super().train_step(x)
        return {**out, "loss": out["loss"] * float("nan")} if int(self.steps) >= 8 else out


def run_with(model_cls: type, run_dir: Path, cfg: TrainConfig, seed: int = 0) -> tuple[GaussianModel, object]:
    seed_everything(seed)
    model = model_cls(DATA.spec)
    model.configure_optimizers()
    return model, train(model, DATA.train, cfg, run_dir, seed, META)


def test_tensor_scalars_are_read_once_per_logging_interval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reads = []
    original = train_module.PendingScalars.read

    def spy(self: train_module.PendingScalars) -> list:
        rows = original(self)
        reads.append([step for step, _ in rows])
        return rows

    monkeypatch.setattr(train_module.PendingScalars, "read", spy)
    cfg = TrainConfig(batch_size=32, max_steps=20, checkpoint_every=20, log_every=10)
    run_with(TensorGaussian, tmp_path / "t", cfg)
    # one read of ten steps at each logging step; the checkpoint at step 20 finds nothing left to read
    assert [r for r in reads if r] == [list(range(1, 11)), list(range(11, 21))]
    curve = read_curve(tmp_path / "t" / "curve.csv", 99)
    assert [row["step"] for row in curve] == [10.0, 20.0] and set(curve[0]) == {"step", "loss", "scale"}


def test_tensor_and_float_scalars_give_the_same_curve(tmp_path: Path) -> None:
    cfg = TrainConfig(batch_size=32, max_steps=12, checkpoint_every=5, log_every=1)
    run_with(TensorGaussian, tmp_path / "t", cfg)
    run_with(GaussianModel, tmp_path / "f", cfg)
    tensor_curve = read_curve(tmp_path / "t" / "curve.csv", 99)
    float_curve = read_curve(tmp_path / "f" / "curve.csv", 99)
    assert [r["loss"] for r in tensor_curve] == [r["loss"] for r in float_curve]


def test_nan_between_logging_steps_names_its_step_and_writes_no_checkpoint_after_it(tmp_path: Path) -> None:
    cfg = TrainConfig(batch_size=32, max_steps=20, checkpoint_every=5, log_every=10)
    with pytest.raises(NonFiniteLossError, match=r"\{'loss': nan\} at step 8;.*step 5"):
        run_with(NanTensorAt, tmp_path, cfg)  # found at the checkpoint of step 10, before it is written
    assert load_checkpoint(tmp_path / CHECKPOINT_NAME)["step"] == 5


def test_non_finite_weights_are_never_checkpointed(tmp_path: Path) -> None:
    cfg = TrainConfig(batch_size=32, max_steps=20, checkpoint_every=5, log_every=5)
    with pytest.raises(NonFiniteLossError, match=r"non-finite weights \(mean\) after step 10; not saved.*step 5"):
        run_with(NanWeightsAt, tmp_path, cfg)
    state = load_checkpoint(tmp_path / CHECKPOINT_NAME)
    assert state["step"] == 5 and torch.isfinite(state["model_state"]["mean"]).all()


def test_cuda_rng_state_is_checkpointed_and_restored_on_a_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No GPU here: the model says it is on CUDA and torch.cuda's RNG calls are recorded."""
    saved, restored = torch.arange(8, dtype=torch.uint8), []
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device=None: saved)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device=None: restored.append((state, device)))
    monkeypatch.setattr(GaussianModel, "device", property(lambda self: torch.device("cuda", 0)))
    model = GaussianModel(DATA.spec)
    model.configure_optimizers()
    train_module.save_checkpoint(tmp_path / "c.pt", model, 3, 1.0, META)
    state = load_checkpoint(tmp_path / "c.pt")
    assert torch.equal(state["cuda_rng_state"], saved)
    train_module.restore(model, state)
    assert len(restored) == 1 and torch.equal(restored[0][0], saved) and restored[0][1] == torch.device("cuda", 0)


def test_amp_trains_under_cpu_bf16_autocast(tmp_path: Path) -> None:
    cfg = TrainConfig(batch_size=32, max_steps=6, checkpoint_every=6, log_every=1, amp=True)
    model, result = run_with(TensorGaussian, tmp_path, cfg)
    assert result.precision == "bf16 autocast" and result.compile is None
    assert all(math.isfinite(r["loss"]) for r in read_curve(tmp_path / "curve.csv", 99))


def test_compile_matches_eager_and_a_failing_compiler_falls_back_with_the_error(tmp_path: Path) -> None:
    eager, _ = run_with(TensorGaussian, tmp_path / "e", TrainConfig(32, 8, checkpoint_every=8, log_every=1))
    compiled, result = run_with(
        TensorGaussian,
        tmp_path / "c",
        TrainConfig(32, 8, checkpoint_every=8, log_every=1, compile=True, compile_backend="eager"),
    )
    assert result.compile == {"backend": "eager", "active": True, "error": None}
    for a, b in zip(eager.state_dict().values(), compiled.state_dict().values(), strict=True):
        assert torch.allclose(a.float(), b.float(), atol=1e-6)

    def broken(gm: torch.fx.GraphModule, example_inputs: list) -> object:
        raise RuntimeError("no compiler here")

    cfg = TrainConfig(32, 8, checkpoint_every=8, log_every=1, compile=True, compile_backend=broken)
    fallback, result = run_with(TensorGaussian, tmp_path / "b", cfg)
    assert result.compile["active"] is False and "no compiler here" in result.compile["error"]
    # the failed first compiled step ran on a copy with the RNG restored: the run is exactly the eager one
    for a, b in zip(eager.state_dict().values(), fallback.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert read_curve(tmp_path / "e" / "curve.csv", 99) == read_curve(tmp_path / "b" / "curve.csv", 99)
