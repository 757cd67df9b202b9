"""The training loop: determinism, resume after interruption, NaN guard, checkpoint safety."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from dummy_models import GaussianModel

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
