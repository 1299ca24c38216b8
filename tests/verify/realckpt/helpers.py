"""Synthetic checkpoints for the analyzer tests: Gaussian and low-rank bases, planted updates, the CLI runner."""

from __future__ import annotations

import json

import ml_dtypes
import numpy as np

from theory import precision as P
from verify.realckpt.cli import main
from verify.realckpt.layout import save_safetensors

BF = ml_dtypes.bfloat16


def gaussian(seed: int, shape, scale: float = 0.05) -> np.ndarray:
    """A bf16 Gaussian matrix (no geometry)."""
    return P.to_bf16(scale * np.random.default_rng(seed).standard_normal(shape))


def low_rank(seed: int, m: int, n: int, k: int, spread=(8.0, 4.0)) -> np.ndarray:
    """A bf16 rank-k matrix with well separated singular values plus small Gaussian noise."""
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.standard_normal((m, k)))
    V, _ = np.linalg.qr(rng.standard_normal((n, k)))
    L = (U * np.linspace(*spread, k)) @ V.T * 0.1
    return P.to_bf16(L + 0.02 * rng.standard_normal((m, n)))


def drift(w0: np.ndarray, sigma: float, seed: int, where=None) -> np.ndarray:
    """w0 + an isotropic Gaussian drift (float64), only where ``where`` is True when given."""
    d = sigma * np.random.default_rng(seed).standard_normal(w0.shape)
    if where is not None:
        d = d * where
    return w0.astype(np.float64) + d


def save_pair(folder, base: dict, tuned: dict) -> tuple:
    """Write base and tuned dicts as two safetensors files; returns their paths."""
    b, t = folder / "b.safetensors", folder / "t.safetensors"
    save_safetensors(b, base)
    save_safetensors(t, tuned)
    return b, t


def run(capsys, *argv, figures: bool = False) -> tuple[int, str, str]:
    """Run the CLI quietly; returns (exit status, stdout, stderr)."""
    rc = main([*map(str, argv), "--quiet", *([] if figures else ["--no-figures"])])
    out = capsys.readouterr()
    return rc, out.out, out.err


def load(out_dir, name: str = "pair.json") -> dict:
    """A JSON output of the CLI."""
    return json.loads((out_dir / name).read_text())


def record(summary: dict, name: str) -> dict:
    """The per-tensor record of ``name``."""
    return next(r for r in summary["tensors"] if r["name"] == name)
