"""Checkpoint folders: ``config.json`` (kind, format_version, constructor fields) + ``model.safetensors``.

A model class is registered with its frozen config dataclass under a ``kind`` name; the config
*is* the constructor argument, so ``load_model(folder)`` rebuilds it without any factory code.
Writes are atomic (a temporary sibling folder renamed into place), and every way a checkpoint can
be broken -- missing, truncated, corrupted, wrong kind, mismatched tensors -- raises
:class:`~flowgen.errors.CheckpointError` with what to do.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from flowgen.errors import CheckpointError

FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"

M = TypeVar("M", bound=type[nn.Module])


@dataclasses.dataclass(frozen=True)
class _Entry:
    model_cls: type[nn.Module]
    config_cls: type


_REGISTRY: dict[str, _Entry] = {}

# Modules whose import registers model kinds; imported on first lookup of an unknown kind so that
# loading a checkpoint never depends on what the caller happened to import. Later packages append.
MODEL_MODULES: list[str] = ["flowgen.toy.model", "flowgen.vision.classifier"]


def _lookup(kind: str) -> _Entry | None:
    if kind not in _REGISTRY:
        import importlib

        for module in MODEL_MODULES:
            importlib.import_module(module)
    return _REGISTRY.get(kind)


def register_model(kind: str, config_cls: type) -> Callable[[M], M]:
    """Class decorator: make ``model_cls(config_cls(...))`` loadable from a folder of this kind."""
    if not dataclasses.is_dataclass(config_cls):
        raise TypeError(f"config class for {kind!r} must be a dataclass")

    def wrap(model_cls: M) -> M:
        previous = _REGISTRY.get(kind)
        if previous is not None and previous.model_cls is not model_cls:
            raise ValueError(f"model kind {kind!r} is already registered to {previous.model_cls}")
        _REGISTRY[kind] = _Entry(model_cls, config_cls)
        model_cls.kind = kind  # type: ignore[attr-defined]
        return model_cls

    return wrap


def registered_kinds() -> list[str]:
    _lookup("")
    return sorted(_REGISTRY)


def config_to_dict(config: Any) -> dict[str, Any]:
    """A config dataclass as plain JSON-able fields (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def config_from_dict(config_cls: type, fields: dict[str, Any], *, source: str = "config") -> Any:
    """Build ``config_cls`` from a dict, rejecting unknown fields with a clear message."""
    names = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(fields) - names)
    if unknown:
        raise CheckpointError(
            f"{source}: unknown field(s) {unknown} for {config_cls.__name__}; "
            f"valid fields are {sorted(names)}"
        )
    kwargs = {}
    for f in dataclasses.fields(config_cls):
        if f.name in fields:
            value = fields[f.name]
            kwargs[f.name] = tuple(value) if isinstance(value, list) else value
    try:
        return config_cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{source}: invalid {config_cls.__name__}: {err}") from err


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder that replaces ``path`` only if the block finishes without error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        yield tmp
        for child in tmp.iterdir():  # make the contents durable before the rename
            with open(child, "rb") as fh:
                os.fsync(fh.fileno())
        old = None
        if path.exists():
            old = path.parent / f".{path.name}.old-{os.getpid()}"
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling path that replaces ``path`` only if the block finishes.

    The temporary name is fresh (not ``mkstemp``, whose 0600 mode the renamed file would keep);
    it is removed if the block fails.
    """
    import uuid

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def save_checkpoint(
    path: str | os.PathLike,
    *,
    kind: str,
    config: Any,
    state_dict: dict[str, torch.Tensor],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Atomically write ``path/config.json`` and ``path/model.safetensors``.

    ``extra`` goes into config.json under ``"extra"`` (e.g. training metadata, class names).
    """
    from safetensors.torch import save_file

    meta = {"kind": kind, "format_version": FORMAT_VERSION, **config_to_dict(config)}
    if extra:
        meta["extra"] = extra
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    with atomic_dir(path) as tmp:
        (tmp / CONFIG_NAME).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        save_file(tensors, str(tmp / WEIGHTS_NAME), metadata={"kind": kind})
    return Path(path)


def save_model(path: str | os.PathLike, model: nn.Module, **kwargs: Any) -> Path:
    """Save a registered model (its ``config`` attribute and its current weights)."""
    kind = getattr(type(model), "kind", None)
    if kind is None:
        raise TypeError(f"{type(model).__name__} is not registered with @register_model")
    return save_checkpoint(
        path, kind=kind, config=model.config, state_dict=model.state_dict(), **kwargs
    )


def read_config(path: str | os.PathLike) -> tuple[str, Any, dict[str, Any]]:
    """Return ``(kind, config, extra)`` of a checkpoint folder without loading weights."""
    folder = Path(path)
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint folder not found: {folder}")
    cfg_file = folder / CONFIG_NAME
    if not cfg_file.is_file():
        raise CheckpointError(f"{folder} is not a checkpoint: {CONFIG_NAME} is missing")
    try:
        meta = json.loads(cfg_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{cfg_file} is corrupted (not valid JSON: {err})") from err
    if not isinstance(meta, dict) or "kind" not in meta:
        raise CheckpointError(f"{cfg_file} has no 'kind' field; is this a flowgen checkpoint?")
    version = meta.pop("format_version", None)
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{cfg_file}: format_version {version!r} is not supported (this flowgen reads {FORMAT_VERSION})"
        )
    kind = meta.pop("kind")
    extra = meta.pop("extra", {}) or {}
    entry = _lookup(kind)
    if entry is None:
        raise CheckpointError(
            f"{cfg_file}: unknown model kind {kind!r}; known kinds: {registered_kinds()}"
        )
    return kind, config_from_dict(entry.config_cls, meta, source=str(cfg_file)), extra


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read ``model.safetensors`` from a folder (or a file), turning damage into CheckpointError."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    file = Path(path)
    if file.is_dir():
        file = file / WEIGHTS_NAME
    if not file.is_file():
        raise CheckpointError(f"weights file not found: {file}")
    try:
        return load_file(str(file), device="cpu")
    except (SafetensorError, OSError, RuntimeError, ValueError) as err:
        raise CheckpointError(
            f"{file} is truncated or corrupted ({err}); re-download or re-save the checkpoint"
        ) from err


def load_weights_into(model: nn.Module, state: dict[str, torch.Tensor], *, source: str) -> None:
    """``model.load_state_dict`` with a one-line error naming missing/unexpected/mismatched keys."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}")
        if mismatched:
            parts.append(f"shape mismatch {mismatched[:5]}")
        raise CheckpointError(f"{source}: weights do not fit the config ({'; '.join(parts)})")
    model.load_state_dict(state)


def load_model(path: str | os.PathLike, *, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a registered model from its folder, in eval mode."""
    kind, config, _ = read_config(path)
    model = _REGISTRY[kind].model_cls(config)
    load_weights_into(model, load_state_dict(path), source=str(path))
    return model.to(device).eval()


def shipped_checkpoints_dir() -> Path:
    """``$FLOWGEN_CHECKPOINTS`` if set, else the ``checkpoints/`` folder beside the package."""
    env = os.environ.get("FLOWGEN_CHECKPOINTS")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "checkpoints"


def resolve_checkpoint(name_or_path: str | os.PathLike) -> Path:
    """A checkpoint folder from a path or the name of a shipped checkpoint."""
    path = Path(name_or_path)
    if (path / CONFIG_NAME).is_file():
        return path
    shipped = shipped_checkpoints_dir()
    if (shipped / str(name_or_path) / CONFIG_NAME).is_file():
        return shipped / str(name_or_path)
    names = sorted(p.name for p in shipped.glob("*") if (p / CONFIG_NAME).is_file())
    raise CheckpointError(
        f"no checkpoint at {name_or_path!r}: give a folder with {CONFIG_NAME} + {WEIGHTS_NAME} "
        f"or one of the shipped names {names}"
    )
