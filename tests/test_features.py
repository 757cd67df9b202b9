"""Feature extractors: pytorch-fid's image preparation, the inception path with a stand-in net, the missing-weights
message, the cached domain classifier, and the `auto` choice."""

from __future__ import annotations

import urllib.error

import pytest
import torch
from omegaconf import OmegaConf
from pytorch_fid import inception as pfi
from torch import nn

from genbench.data import load_digits_data, load_toy2d
from genbench.errors import GenbenchError
from genbench.metrics import features as feats


def pytorch_fid_preprocessing(x: torch.Tensor) -> torch.Tensor:
    """pytorch-fid's own InceptionV3.forward with identity blocks: exactly the input its first block would see."""
    net = pfi.InceptionV3.__new__(pfi.InceptionV3)
    nn.Module.__init__(net)
    net.resize_input, net.normalize_input = True, True
    net.output_blocks, net.last_needed_block = [0], 0
    net.blocks = nn.ModuleList([nn.Identity()])
    return net(x)[0]


class Recorder(nn.Module):
    """A stand-in with InceptionV3's interface: a list of (B, D, h, w) maps; it remembers its input."""

    def __init__(self, dim: int = 6, spatial: int = 1) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, 1)
        self.spatial = spatial
        self.seen: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        self.seen = x
        return [nn.functional.adaptive_avg_pool2d(self.proj(x), self.spatial)]


def test_prepare_matches_pytorch_fid_rgb_and_grayscale() -> None:
    rgb = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(feats.prepare_for_inception(rgb), pytorch_fid_preprocessing(rgb))
    gray = torch.rand(2, 1, 8, 8)
    prepared = feats.prepare_for_inception(gray)
    assert prepared.shape == (2, 3, 299, 299)
    # pytorch-fid reads grayscale files through PIL's convert('RGB'): the channel repeated three times
    torch.testing.assert_close(prepared, pytorch_fid_preprocessing(gray.repeat(1, 3, 1, 1)))
    # [0, 1] -> [-1, 1]
    torch.testing.assert_close(feats.prepare_for_inception(torch.zeros(1, 1, 5, 5)), -torch.ones(1, 3, 299, 299))
    torch.testing.assert_close(feats.prepare_for_inception(torch.ones(1, 3, 5, 5)), torch.ones(1, 3, 299, 299))


def test_prepare_refuses_non_images() -> None:
    with pytest.raises(GenbenchError, match="images"):
        feats.prepare_for_inception(torch.rand(4, 2))


@pytest.mark.parametrize("spatial", [1, 2])  # pool3 gives 1x1; larger maps are average-pooled as pytorch-fid does
def test_inception_features_prepare_run_pool(spatial: int) -> None:
    net = Recorder(dim=6, spatial=spatial)
    x = torch.rand(3, 1, 8, 8)
    out = feats.inception_features(net, x)
    assert out.shape == (3, 6)
    torch.testing.assert_close(net.seen, feats.prepare_for_inception(x))
    expected = net(feats.prepare_for_inception(x))[0].mean(dim=(2, 3))  # (B, D, s, s) averaged to (B, D)
    torch.testing.assert_close(out, expected)


def test_inception_extractor_with_injected_net_batches() -> None:
    net = Recorder(dim=4)
    ext = feats.inception_extractor(OmegaConf.create({}), torch.device("cpu"), net=net)
    x = torch.rand(5, 3, 16, 16)
    f = feats.extract(ext, x, batch_size=2)
    assert ext.name == "inception" and f.shape == (5, 4) and f.dtype.name == "float32"
    torch.testing.assert_close(torch.from_numpy(f), feats.inception_features(net, x).detach())


def test_missing_weights_one_line_naming_file_and_place(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def offline(url: str, dst: str, progress: bool = True) -> None:
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    for download in (True, False):
        with pytest.raises(GenbenchError) as err:
            feats.inception_weights_file(None, download=download)
        message = str(err.value)
        assert "\n" not in message
        assert "pt_inception-2015-12-05-6726825d.pth" in message
        assert str(tmp_path / "hub" / "checkpoints") in message
    with pytest.raises(GenbenchError, match="weights_path"):
        feats.inception_weights_file(str(tmp_path / "nowhere.pth"))


def test_weights_found_in_hub_dir_or_given_path(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    (tmp_path / "checkpoints").mkdir()
    cached = tmp_path / "checkpoints" / feats.FID_WEIGHTS_FILE
    cached.write_bytes(b"x")
    assert feats.inception_weights_file(None, download=False) == cached
    assert feats.inception_weights_file(str(cached)) == cached


def test_foreign_weights_file_is_one_line_error(tmp_path) -> None:
    path = tmp_path / feats.FID_WEIGHTS_FILE
    torch.save({"not": torch.zeros(1)}, path)
    with pytest.raises(GenbenchError, match="not the FID Inception state dict"):
        feats.load_fid_inception(path)


def test_auto_features() -> None:
    digits, toy = load_digits_data(), load_toy2d(n_train=10, n_test=10)
    assert feats.resolve_features("auto", toy) == "raw"
    assert feats.resolve_features("auto", digits) == "domain"
    assert feats.resolve_features("inception", digits) == "inception"
    with pytest.raises(GenbenchError, match="accepted"):
        feats.resolve_features("lenet", digits)


def test_domain_classifier_trains_once_and_is_cached(tmp_path, monkeypatch) -> None:
    data = load_digits_data()
    cfg = OmegaConf.create({"max_steps": 30})
    net, accuracy, key = feats.domain_classifier(data, cfg, torch.device("cpu"), str(tmp_path))
    assert accuracy > 0.3  # chance is 0.1; 30 Adam steps are plenty to beat it
    f = net.features(data.test[:4])
    assert f.shape == (4, 128)

    def no_training(*args, **kwargs) -> None:
        raise AssertionError("cached classifier retrained")

    monkeypatch.setattr(feats, "_train_classifier", no_training)
    net2, accuracy2, key2 = feats.domain_classifier(data, cfg, torch.device("cpu"), str(tmp_path))
    assert (key2, accuracy2) == (key, accuracy)
    torch.testing.assert_close(net2.features(data.test[:4]), f)
    # another config or other data: another key, so it would train again
    with pytest.raises(AssertionError, match="retrained"):
        feats.domain_classifier(data, OmegaConf.create({"max_steps": 31}), torch.device("cpu"), str(tmp_path))
    data.train = data.train.flip(0)
    with pytest.raises(AssertionError, match="retrained"):
        feats.domain_classifier(data, cfg, torch.device("cpu"), str(tmp_path))


def test_domain_classifier_weights_depend_on_its_own_seed_not_the_runs(tmp_path) -> None:
    """Two runs with different seeds share one cache key, so they must train the same weights (issue 14)."""
    data = load_digits_data()
    cfg = OmegaConf.create({"max_steps": 5, "seed": 0})
    trained = []
    for run_seed, folder in ((0, "a"), (1, "b")):
        torch.manual_seed(run_seed)  # the run's global RNG state differs
        trained.append(feats.domain_classifier(data, cfg, torch.device("cpu"), str(tmp_path / folder)))
    (net_a, acc_a, key_a), (net_b, acc_b, key_b) = trained
    assert key_a == key_b and acc_a == acc_b
    for p, q in zip(net_a.state_dict().values(), net_b.state_dict().values(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    other = feats.domain_classifier(
        data, OmegaConf.create({"max_steps": 5, "seed": 1}), torch.device("cpu"), str(tmp_path)
    )
    assert other[2] != key_a  # its own seed is part of the key
    extractor = feats.domain_extractor(data, OmegaConf.create({"domain": cfg, "cache_dir": str(tmp_path / "a")}), "cpu")
    assert extractor.extra == {"classifier_accuracy": acc_a, "classifier_key": key_a}  # recorded in every FID metric


def test_domain_needs_labels() -> None:
    toy = load_toy2d(n_train=10, n_test=10)
    with pytest.raises(GenbenchError, match="labelled images"):
        feats.domain_classifier(toy, None, torch.device("cpu"))


def test_raw_features_are_the_data() -> None:
    x = torch.randn(7, 2)
    f = feats.extract(feats.raw_extractor(), x, batch_size=3)
    torch.testing.assert_close(torch.from_numpy(f), x)
