"""The config's schema: typed dataclasses in Hydra's ConfigStore, and the checks every job runs first.

Hydra checks the types while it composes (`train.max_steps=abc` or `seed=1.5` never starts a job).
`validate_config` then checks, before any work, what composition cannot: keys added with `+key=` that no
stage reads (Hydra's `+` opens even a typed node), ranges (the dataclasses' `__post_init__`), and the model's
arguments against its class's signature, so one check serves every model (no schema per model).
Each problem is one line naming the key, the value and what is accepted.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from genbench import CONF_DIR
from genbench.data import TOY_MIXTURES
from genbench.errors import GenbenchError
from genbench.metrics.kid import PRECISIONS as KID_PRECISIONS
from genbench.train import TrainConfig

DATASET_TARGET = "genbench.datasets.load_dataset"


@dataclass
class GenbenchConfig:
    """The top level of `conf/config.yaml`; `eval` and `speed` are the metric presets' own business."""

    dataset: Any = MISSING
    model: Any = MISSING
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: Any = MISSING
    speed: Any = MISSING
    seed: int = 0
    out_dir: str = MISSING
    run_dir: str | None = None


@dataclass
class DataBase:
    """What every dataset config has: the loader, and the share of training rows held out for validation."""

    _target_: str = DATASET_TARGET
    valid_fraction: float = 0.1

    def __post_init__(self) -> None:
        if not 0.0 <= self.valid_fraction < 1.0:
            raise GenbenchError(f"dataset.valid_fraction={self.valid_fraction!r}: accepted: a number in [0, 1)")


@dataclass
class DigitsData(DataBase):
    name: str = "digits"


@dataclass
class Toy2dData(DataBase):
    name: str = "toy2d"
    mixture: str = "ring8"
    n_train: int = 20_000
    n_test: int = 5_000

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mixture not in TOY_MIXTURES:
            raise GenbenchError(f"dataset.mixture={self.mixture!r}: accepted: {', '.join(TOY_MIXTURES)}")
        for key in ("n_train", "n_test"):
            if getattr(self, key) <= 0:
                raise GenbenchError(f"dataset.{key}={getattr(self, key)!r}: accepted: an integer > 0")


@dataclass
class DownloadedData(DataBase):
    """MNIST, Fashion-MNIST, CIFAR-10: files in the data root, fetched from `mirrors` in order when missing."""

    name: str = MISSING
    download: bool = True
    mirrors: list[str] = field(default_factory=list)


@dataclass
class SyntheticData(DataBase):
    name: str = "synthetic"
    shape: list[int] = field(default_factory=lambda: [1, 28, 28])
    levels: int = 256
    n_train: int = 1000
    n_test: int = 500


@dataclass
class NpzData(DataBase):
    name: str = "npz"
    path: str = ""
    key: str | None = None


# conf/config.yaml starts from `genbench_schema`; each conf/dataset/<name>.yaml from `/schema/dataset/<name>`.
# Stored when this module is imported (Hydra's idiom), which genbench.cli does before anything composes.
_STORE = ConfigStore.instance()
_STORE.store(name="genbench_schema", node=GenbenchConfig)
for _name, _node in {
    "digits": DigitsData,
    "toy2d": Toy2dData,
    "mnist": DownloadedData(name="mnist"),
    "fashion_mnist": DownloadedData(name="fashion_mnist"),
    "cifar10": DownloadedData(name="cifar10"),
    "npz": NpzData,
    "synthetic": SyntheticData,
}.items():
    _STORE.store(group="schema/dataset", name=_name, node=_node)


# ----------------------------------------------------------------------------- the checks


def validate_config(cfg: DictConfig, check_model: bool = True) -> TrainConfig:
    """Refuse what composition let through, before any work; returns the typed training settings.

    Raises:
        GenbenchError: one line naming the key, the value and what is accepted.
    """
    _refuse_unknown_keys(cfg, "", allowed_extra=("hydra",))
    for section in ("train", "dataset"):
        if section in cfg and isinstance(cfg[section], DictConfig):
            _refuse_unknown_keys(cfg[section], f"{section}.")
    for section in ("eval", "speed"):  # open sections: their default preset names every key a family reads
        if section in cfg and isinstance(cfg[section], DictConfig):
            _refuse_keys_not_in(cfg[section], preset_keys(section), f"{section}.")
    kid_precision = OmegaConf.select(cfg, "eval.fid.kid_precision", default="float64")
    if kid_precision not in KID_PRECISIONS:  # else a typo surfaces only after training, in the evaluation
        raise GenbenchError(
            f"eval.fid.kid_precision={kid_precision!r} is not a KID kernel precision; "
            f"accepted: {', '.join(KID_PRECISIONS)}"
        )
    train = _to_object(cfg.train, TrainConfig, "train")
    if dataclasses.is_dataclass(OmegaConf.get_type(cfg.dataset)):
        OmegaConf.to_object(cfg.dataset)  # the dataset schema's ranges
    if check_model:
        check_model_arguments(OmegaConf.to_container(cfg.model, resolve=True))
    return train


def _refuse_unknown_keys(node: DictConfig, prefix: str, allowed_extra: tuple[str, ...] = ()) -> None:
    schema = OmegaConf.get_type(node)
    if not dataclasses.is_dataclass(schema):
        return  # an open section (eval, speed, a dataset without a schema): its own code reads it
    accepted = [f.name for f in dataclasses.fields(schema)]
    for key in node:
        if key not in accepted and key not in allowed_extra:
            raise GenbenchError(f"unknown key '{prefix}{key}' (no stage reads it); accepted: {', '.join(accepted)}")


def preset_keys(group: str) -> DictConfig:
    """`conf/<group>/default.yaml`, the preset every other preset of the group inherits and only overrides."""
    node = OmegaConf.load(CONF_DIR / group / "default.yaml")
    node.pop("defaults", None)
    return node


def _refuse_keys_not_in(node: DictConfig, reference: DictConfig, prefix: str) -> None:
    """Every key of `node`, at any depth, must exist in `reference` (a `+eval.fid.n_gne=10` reaches nothing)."""
    for key in node:
        if key not in reference:
            accepted = ", ".join(str(k) for k in reference)
            raise GenbenchError(f"unknown key '{prefix}{key}' (no stage reads it); accepted: {accepted}")
        child, ref = node[key], reference[key]
        if isinstance(child, DictConfig) and isinstance(ref, DictConfig):
            _refuse_keys_not_in(child, ref, f"{prefix}{key}.")


def _to_object(node: DictConfig, schema: type, prefix: str) -> Any:
    """The section as its dataclass (which checks ranges), also for a config composed without the schema."""
    if OmegaConf.get_type(node) is schema:
        return OmegaConf.to_object(node)
    values = OmegaConf.to_container(node, resolve=True)
    unknown = sorted(set(values) - {f.name for f in dataclasses.fields(schema)})
    if unknown:
        raise GenbenchError(f"unknown key '{prefix}.{unknown[0]}' (no stage reads it)")
    return schema(**values)


# Model arguments that mean one thing in every model that has them (a schema for names, not for models):
# a learning rate is positive, and a layer or a latent code of zero units is no model at all.
UNIT_COUNTS = frozenset(
    {"latent_dim", "width", "hidden", "hidden1", "hidden2", "hidden_dim", "channels", "head_channels"}
    | {"output_hidden", "mlp_hidden"}
)


def check_model_arguments(model: dict[str, Any]) -> None:
    """Check `model.*` against `_target_`'s `__init__`: known names, annotated types, shared ranges."""
    target, name = model.get("_target_"), model.get("name", "?")
    try:
        cls = hydra.utils.get_class(target)
    except Exception as err:  # Hydra wraps import errors of every kind
        raise GenbenchError(f"model._target_={target!r} cannot be imported ({type(err).__name__})") from None
    signature = inspect.signature(cls).parameters.values()
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature)
    params = [p.name for p in signature if p.name != "spec" and p.kind is not inspect.Parameter.VAR_KEYWORD]
    try:
        hints = typing.get_type_hints(cls.__init__)
    except (NameError, TypeError):  # annotations that only a type checker resolves: skip the type check
        hints = {}
    for key, value in model.items():
        if key in ("_target_", "name"):
            continue
        if key not in params:
            if takes_any:
                continue
            accepted = ", ".join(params)
            raise GenbenchError(
                f"unknown key 'model.{key}': {name} ({target}) has no such argument; accepted: {accepted}"
            )
        if key in hints and not _matches(value, hints[key]):
            raise GenbenchError(f"model.{key}={value!r}: accepted: {_describe(hints[key])}")
        _check_range(key, value)


def _check_range(key: str, value: Any) -> None:
    if isinstance(value, bool):
        return
    if key == "lr" and isinstance(value, int | float) and not (math.isfinite(value) and value > 0):
        raise GenbenchError(f"model.lr={value!r}: accepted: a finite number > 0")
    if key in UNIT_COUNTS and isinstance(value, int) and value < 1:
        raise GenbenchError(f"model.{key}={value!r}: accepted: an integer >= 1")
    if isinstance(value, int) and value < 0:  # no model counts anything below zero
        raise GenbenchError(f"model.{key}={value!r}: accepted: an integer >= 0")


def _matches(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is not None:
        hint = origin  # list[int] -> list, tuple[int, ...] -> tuple: the container is checked, not its items
    if hint in (list, tuple):
        return isinstance(value, list | tuple)
    return not isinstance(hint, type) or isinstance(value, hint)


def _describe(hint: Any) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in typing.get_args(hint))
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string", type(None): "null"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def config_error_message(err: BaseException) -> str:
    """Hydra's composition error (a page with a stack of causes) as one line naming the key and the value."""
    cause = err.__cause__ if isinstance(err.__cause__, OmegaConfBaseException) else err
    key = getattr(cause, "full_key", None)
    if isinstance(cause, ConfigAttributeError | ConfigKeyError) and key:
        schema = getattr(cause, "object_type", None)
        accepted = [f.name for f in dataclasses.fields(schema)] if dataclasses.is_dataclass(schema) else []
        return f"unknown key {key!r}" + (f"; accepted: {', '.join(accepted)}" if accepted else "")
    if isinstance(cause, OmegaConfBaseException) and key:
        return f"{key}: {str(cause).splitlines()[0]}"
    text = str(err).split("Config search path:")[0]  # Hydra's list of config sources says nothing here
    return " ".join(line.strip() for line in text.splitlines() if line.strip())
