"""Checkpoints: parameters as safetensors with the config and library versions as JSON beside them.

Writes are atomic (a temporary file with a unique name in the same folder, then rename) and create files
with the user's umask, like any other program; ``meta.json`` is written last, so a directory without it is
an incomplete checkpoint. Tensors keep their shapes, 0-d ones included. Loading checks names, shapes and
finiteness against the model the config builds, and stops with one sentence naming the tensor.
"""

from __future__ import annotations

import json
import os
import secrets
from importlib import metadata
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save

PARAMS_FILE = "params.safetensors"
META_FILE = "meta.json"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file or tensor."""


def library_versions() -> dict[str, str]:
    """Versions of the libraries a result depends on."""
    out = {}
    for name in ("jax", "jaxlib", "flax", "optax", "numpy", "ml_dtypes", "safetensors"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "missing"
    return out


def temporary_name(path: Path) -> Path:
    """A fresh hidden name beside ``path`` (``.<name>.<pid>.<random>.tmp``) for writing before a rename: unique
    across processes and threads, and recognisable as a leftover should a process die before the rename."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, then rename. The file gets the
    user's umask (mode 0666 masked), as with ``open``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, obj) -> None:
    """Atomically write ``obj`` as indented JSON."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def save_checkpoint(directory, flat: dict[str, np.ndarray], meta: dict) -> Path:
    """Save ``flat`` (name -> array, any float dtype incl. bf16) and ``meta`` (config etc.) atomically."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name, arr in flat.items():
        if not np.all(np.isfinite(np.asarray(arr, dtype=np.float32))):
            raise CheckpointError(f"Refusing to save: tensor `{name}` holds NaN or infinite values.")
    # np.require keeps 0-d arrays 0-d (np.ascontiguousarray would make them shape (1,))
    atomic_write_bytes(directory / PARAMS_FILE, save({k: np.require(v, requirements="C") for k, v in flat.items()}))
    atomic_write_json(directory / META_FILE, {**meta, "versions": library_versions()})
    return directory


def read_meta(directory) -> dict:
    """The meta.json of a checkpoint directory."""
    path = Path(directory) / META_FILE
    if not path.exists():
        raise CheckpointError(f"Checkpoint {directory} is incomplete: {META_FILE} is missing.")
    return json.loads(path.read_text())


def load_checkpoint(directory, expected: dict[str, tuple] | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """(flat params, meta) of a checkpoint; with ``expected`` (name -> shape) every tensor is checked."""
    directory = Path(directory)
    meta = read_meta(directory)
    path = directory / PARAMS_FILE
    if not path.exists():
        raise CheckpointError(f"Checkpoint {directory} is incomplete: {PARAMS_FILE} is missing.")
    try:
        flat = load_file(str(path))
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(f"Checkpoint file {path} cannot be read ({e}).") from None
    if expected is not None:
        for name in sorted(expected):
            if name not in flat:
                raise CheckpointError(f"Checkpoint {directory} lacks tensor `{name}`.")
        for name in sorted(flat):
            if name not in expected:
                raise CheckpointError(f"Checkpoint {directory} has unexpected tensor `{name}`.")
            if tuple(flat[name].shape) != tuple(expected[name]):
                raise CheckpointError(
                    f"Tensor `{name}` in {directory} has shape {tuple(flat[name].shape)}, expected {tuple(expected[name])}."
                )
    for name in sorted(flat):
        if not np.all(np.isfinite(np.asarray(flat[name], dtype=np.float32))):
            raise CheckpointError(f"Tensor `{name}` in {directory} holds NaN or infinite values.")
    return flat, meta
