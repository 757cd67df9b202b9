"""Feature extractors for sample-quality metrics: `inception`, `domain` and `raw`.

* `inception`: the FID Inception network of pytorch-fid (Heusel et al. 2017, "GANs trained by a two time-scale
  update rule converge to a local Nash equilibrium"; Szegedy et al. 2016 for Inception-v3), 2048-d pool3
  features, with the weights file pytorch-fid uses (`pt_inception-2015-12-05-6726825d.pth`, ported from
  TensorFlow's FID code). Images are prepared as pytorch-fid prepares them: grayscale repeated to RGB, bilinear
  resize to 299x299, `[0, 1]` mapped to `[-1, 1]`.
* `domain`: for digits and MNIST-like data (where Inception is a poor fit and offline unavailable), a small CNN
  classifier trained once on the training split and cached on disk; its penultimate layer gives the features,
  and its test accuracy is recorded beside every number (the practice of e.g. Ravuri & Vinyals 2019 and the
  "Fréchet LeNet distance" used on MNIST).
* `raw`: the data vector itself (toy 2-D data).

Every extractor maps a batch in data space `(B, *shape)` to features `(B, D)`.
"""

from __future__ import annotations

import hashlib
import json
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from genbench.data import Dataset, DataSpec, data_root
from genbench.errors import GenbenchError
from genbench.results import atomic_write

FEATURES = ("auto", "inception", "domain", "raw")
FID_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{FID_WEIGHTS_FILE}"
INCEPTION_SIZE = 299
# Bump when the classifier's architecture or training code changes, so cached classifiers are not reused.
DOMAIN_VERSION = 2  # 2: initial weights from the classifier's own seed (1 took them from the run's RNG)


@dataclass
class FeatureExtractor:
    """A named feature map. `key` identifies network, weights and preprocessing (part of every cache hash)."""

    name: str
    key: str
    fn: Callable[[torch.Tensor], torch.Tensor]
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    extra: dict[str, Any] = field(default_factory=dict)
    # class logits (B, classes) of a batch, where the features come from a classifier (`domain`); else None
    classify: Callable[[torch.Tensor], torch.Tensor] | None = None


def resolve_features(name: str, data: Dataset) -> str:
    """`auto` -> raw for non-image data, inception for RGB images of at least 32x32, else domain (needs labels)."""
    if name not in FEATURES:
        raise GenbenchError(f"unknown eval.features.name {name!r}; accepted: {', '.join(FEATURES)}")
    if name != "auto":
        return name
    spec = data.spec
    if not spec.is_image:
        return "raw"
    channels, height, width = spec.shape
    if (channels == 3 and min(height, width) >= 32) or data.train_labels is None:
        return "inception"
    return "domain"


@torch.no_grad()
def extract(
    extractor: FeatureExtractor, x: torch.Tensor, batch_size: int, desc: str = "features", progress: bool = True
) -> np.ndarray:
    """Features of `x` (N, *shape), computed in batches on the extractor's device; float32 array (N, D)."""
    out = []
    for start in tqdm(range(0, len(x), batch_size), desc=desc, leave=False, unit="batch", disable=not progress):
        batch = x[start : start + batch_size].to(extractor.device, torch.float32)
        out.append(extractor.fn(batch).float().cpu())
    return torch.cat(out).numpy()


def tensor_digest(*tensors: torch.Tensor | None) -> str:
    """sha256 of the tensors' bytes (shape and dtype included): the data part of every cache key."""
    digest = hashlib.sha256()
    for t in tensors:
        if t is None:
            digest.update(b"none")
            continue
        t = t.detach().cpu().contiguous()
        digest.update(f"{tuple(t.shape)}{t.dtype}".encode())
        digest.update(t.numpy().tobytes())
    return digest.hexdigest()


def cache_root(cache_dir: str | None = None) -> Path:
    """Where metric caches live: the configured folder, else `<data root>/cache`."""
    return Path(cache_dir).expanduser() if cache_dir else data_root() / "cache"


# ----------------------------------------------------------------------------- raw


def raw_extractor() -> FeatureExtractor:
    return FeatureExtractor("raw", "raw", lambda x: x.flatten(1))  # (B, *shape) -> (B, D)


# ----------------------------------------------------------------------------- inception


def prepare_for_inception(x: torch.Tensor) -> torch.Tensor:
    """Images in `[0, 1]` (B, C, H, W), C in {1, 3} -> the network's input (B, 3, 299, 299) in `[-1, 1]`.

    Grayscale is repeated to three channels (what PIL's `convert('RGB')` does in pytorch-fid), then the bilinear
    resize and `2x - 1` scaling of pytorch-fid's `InceptionV3(resize_input=True, normalize_input=True)`.
    """
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise GenbenchError(f"inception features need images (B, 1|3, H, W); got shape {tuple(x.shape)}")
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)  # (B, 3, H, W)
    x = F.interpolate(x, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False)
    return 2 * x - 1


def inception_features(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Prepare `x`, run an `InceptionV3`-like `net` (returns a list of feature maps), pool to (B, D).

    `net` must not resize or normalize again (build it with `resize_input=False, normalize_input=False`).
    """
    pred = net(prepare_for_inception(x))[0]  # (B, D, h, w); pool3 gives h = w = 1
    if pred.shape[2:] != (1, 1):
        pred = F.adaptive_avg_pool2d(pred, output_size=(1, 1))
    return pred.flatten(1)  # (B, D)


def inception_weights_file(weights_path: str | None = None, download: bool = True) -> Path:
    """The FID Inception weights: `weights_path` if given, else torch hub's checkpoints dir (as pytorch-fid).

    Downloads into the hub dir when missing and allowed; otherwise raises one line naming the file and place.
    """
    if weights_path:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise GenbenchError(f"eval.features.weights_path {str(path)!r} does not exist; it is {FID_WEIGHTS_FILE}")
        return path
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    path = folder / FID_WEIGHTS_FILE
    if path.is_file():
        return path
    reason = "download disabled (eval.features.download=false)"
    if download:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(FID_WEIGHTS_URL, str(path), progress=True)
            return path
        except (urllib.error.URLError, OSError, ValueError) as err:
            reason = f"download from {FID_WEIGHTS_URL} failed ({type(err).__name__}: {err})".replace("\n", " ")
    raise GenbenchError(
        f"FID Inception weights {FID_WEIGHTS_FILE} not found: put the file into {folder} (torch hub checkpoints "
        f"dir) or set eval.features.weights_path=/path/to/{FID_WEIGHTS_FILE}; {reason}"
    )


def load_fid_inception(weights_file: Path) -> nn.Module:
    """pytorch-fid's `InceptionV3` (pool3 block, FID weights) with its state loaded from `weights_file`.

    pytorch-fid's `fid_inception_v3` fetches its weights with `load_state_dict_from_url`; we hand that call the
    state we loaded ourselves (`weights_only=True`), so the network is pytorch-fid's own, block for block.
    """
    from unittest import mock

    from pytorch_fid import inception as pfi

    try:
        state = torch.load(weights_file, map_location="cpu", weights_only=True)
        with mock.patch.object(pfi, "load_state_dict_from_url", lambda *args, **kwargs: state):
            net = pfi.InceptionV3([3], resize_input=False, normalize_input=False)
    except (RuntimeError, OSError, KeyError, ValueError) as err:
        first_line = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise GenbenchError(f"{weights_file} is not the FID Inception state dict ({first_line})") from err
    return net.eval()


def inception_extractor(fcfg: Any, device: torch.device, net: nn.Module | None = None) -> FeatureExtractor:
    """The `inception` extractor; `net` injects a stand-in of the same interface (tests), else the real one."""
    if net is None:
        net = load_fid_inception(inception_weights_file(fcfg.get("weights_path"), fcfg.get("download", True)))
        key = f"inception:{FID_WEIGHTS_FILE}:bilinear{INCEPTION_SIZE}"
    else:
        key = f"inception:injected:{type(net).__name__}"
    net = net.to(device).eval()
    return FeatureExtractor("inception", key, lambda x: inception_features(net, x), device)


# ----------------------------------------------------------------------------- domain classifier


class DomainClassifier(nn.Module):
    """A small CNN for any (C, H, W): two 3x3 convs (2x2 max-pool between them from 16 px up), adaptive pool to
    4x4, then two linears; the first linear's ReLU output is the feature vector."""

    def __init__(self, spec: DataSpec, num_classes: int, width: int = 16, feature_dim: int = 128) -> None:
        super().__init__()
        channels = spec.shape[0]
        self.conv = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2) if min(spec.shape[1:]) >= 16 else nn.Identity(),  # MNIST/CIFAR: 28/32 -> 14/16 px
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(4),  # any input size -> (B, 2w, 4, 4)
        )
        self.penultimate = nn.Sequential(nn.Flatten(), nn.Linear(2 * width * 16, feature_dim), nn.ReLU())
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.penultimate(self.conv(x))  # (B, feature_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # (B, num_classes) logits


def _domain_config(dcfg: Any) -> dict[str, Any]:
    keys = {"width": 16, "feature_dim": 128, "epochs": 10, "max_steps": 1000, "batch_size": 128, "lr": 1e-3}
    keys.update({"seed": 0, "version": DOMAIN_VERSION})
    return {k: (dcfg.get(k, v) if dcfg is not None else v) for k, v in keys.items()}


def _train_classifier(net: DomainClassifier, data: Dataset, cfg: dict[str, Any], device: torch.device) -> None:
    """Adam on cross-entropy over the training split, at most `max_steps` updates; seeded, global RNG untouched."""
    x, y = data.train, data.train_labels
    opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"])
    steps_per_epoch = -(-len(x) // cfg["batch_size"])
    total = min(cfg["epochs"] * steps_per_epoch, cfg["max_steps"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg["seed"])
        net.train()
        step = 0
        with tqdm(total=total, desc="domain classifier", leave=False, unit="step") as bar:
            while step < total:
                for idx in torch.randperm(len(x)).split(cfg["batch_size"]):
                    loss = F.cross_entropy(net(x[idx].to(device)), y[idx].to(device))
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    step += 1
                    bar.update()
                    if step >= total:
                        break
    net.eval()


@torch.no_grad()
def _accuracy(net: DomainClassifier, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> float:
    correct = 0
    for xb, yb in zip(x.split(512), y.split(512), strict=True):
        correct += int((net(xb.to(device)).argmax(1).cpu() == yb).sum())
    return correct / len(x)


def domain_key(data: Dataset, cfg: dict[str, Any], num_classes: int, device: torch.device) -> str:
    """Everything that determines the classifier's weights: the training and test data with their labels, its
    config (seed and code version included), the torch version and the kind of device it trains on."""
    facts = {**cfg, "num_classes": num_classes, "shape": list(data.spec.shape)}
    facts.update(torch=torch.__version__, device=torch.device(device).type)
    blob = json.dumps(facts, sort_keys=True)
    digest = tensor_digest(data.train, data.train_labels, data.test, data.test_labels)
    return hashlib.sha256((digest + blob).encode()).hexdigest()[:16]


def domain_classifier(
    data: Dataset, dcfg: Any, device: torch.device, cache_dir: str | None = None
) -> tuple[DomainClassifier, float, str]:
    """Train (once) or load the cached domain classifier; returns it, its test accuracy and its cache key.

    The weights depend only on what the key names (`domain_key`): the classifier's own seed draws its initial
    weights and batch order, whatever the run's seed, so every run on the same data shares one classifier.
    """
    if data.train_labels is None or data.test_labels is None or not data.spec.is_image:
        raise GenbenchError(f"features=domain needs labelled images; dataset {data.spec.name!r} has none")
    cfg = _domain_config(dcfg)
    num_classes = data.spec.num_classes or int(data.train_labels.max()) + 1
    key = domain_key(data, cfg, num_classes, device)
    path = cache_root(cache_dir) / "fid_domain" / f"{data.spec.name}-{key}.pt"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg["seed"])  # the initial weights: from the classifier's own seed, never the run's
        net = DomainClassifier(data.spec, num_classes, cfg["width"], cfg["feature_dim"]).to(device)
    if path.is_file():
        saved = torch.load(path, map_location=device, weights_only=True)
        net.load_state_dict(saved["state_dict"])
        return net.eval(), float(saved["accuracy"]), key
    _train_classifier(net, data, cfg, device)
    accuracy = _accuracy(net, data.test, data.test_labels, device)
    state = {"state_dict": net.state_dict(), "accuracy": accuracy, "config": cfg}
    atomic_write(path, lambda tmp: torch.save(state, tmp))
    return net, accuracy, key


def domain_extractor(data: Dataset, fcfg: Any, device: torch.device) -> FeatureExtractor:
    net, accuracy, key = domain_classifier(data, fcfg.get("domain"), device, fcfg.get("cache_dir"))
    extra = {"classifier_accuracy": accuracy, "classifier_key": key}
    return FeatureExtractor("domain", f"domain:{key}", net.features, device, extra, classify=net)


def build_extractor(name: str, data: Dataset, fcfg: Any, device: torch.device) -> FeatureExtractor:
    """The extractor `name` (already resolved from `auto`) for `data`, configured by the `eval.features` section."""
    if name == "raw":
        return raw_extractor()
    if name == "domain":
        return domain_extractor(data, fcfg, device)
    if name == "inception":
        return inception_extractor(fcfg, device)
    raise GenbenchError(f"unknown eval.features.name {name!r}; accepted: {', '.join(FEATURES)}")
