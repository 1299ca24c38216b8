"""Function-preserving edits of one transformer block (docs/science.md claim C12, the causal test).

An edit reparametrises block ``layer`` without changing the function the model computes:

- ``rotate_vo``: per head h a Haar-random orthogonal R_h (dh x dh); V's output columns of head h
  become V_h R_h and O's input rows of head h become R_h^T O_h. Attention mixes value vectors with
  scalar weights per head, so head h's output o_h becomes o_h R_h and o_h R_h R_h^T O_h = o_h O_h.
  Exact in real arithmetic, float32 round-off otherwise. Q and K are left alone (rope acts on them).
- ``permute_heads``: a permutation of the heads applied to the q, k, v output columns and the o input
  rows. Exact (values only move); with rope too, since rope acts identically within every head.
- ``permute_mlp``: a permutation of the d_ff hidden units (fc_in kernel columns and bias, fc_out
  kernel rows). Exact: GELU acts unit by unit.

Frames. Parameters are the flat dict of ``toy_models.transformer.flat_params`` (kernels stored
(in, out)). Head h owns output columns h*dh:(h+1)*dh of the q/k/v kernels and input rows
h*dh:(h+1)*dh of the o kernel. The permutations are uniformly random derangements (no head or unit
keeps its place), so every coordinate of the edited tensors moves.

Every edit is a linear map of the weights, tensor by tensor. So undoing it (``invert_params``) and
mapping an update made in the edited frame back to the original frame (``map_update_back``) are the
same inverse map: if the edited model is trained to W_e + dW_e, the original model with
W + map_update_back(dW_e) computes the same function. Boolean masks map back only for permutations
(``map_mask_back``); a rotation mixes coordinates, so the caller must rotate the fp32 update back
and re-derive the changed mask from the bf16 rounding of W0_orig + dW_back.

Use in training: the trainer applies the edit to the pretrained base's parameters and then rounds
the base to bf16 as usual. After that rounding the rotated model equals the original only to bf16
precision (the rotated weights are new numbers, rounded anew), while the permuted models stay
exact (bf16 rounding commutes with moving values).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import numpy as np

from toy_models.config import ConfigError, check
from toy_models.transformer import ModelConfig

EDIT_KINDS = ("none", "rotate_vo", "permute_heads", "permute_mlp")

_ROTATE_TENSORS = ("attn.v.kernel", "attn.o.kernel")
_HEAD_TENSORS = ("attn.q.kernel", "attn.k.kernel", "attn.v.kernel", "attn.o.kernel")
_MLP_TENSORS = ("fc_in.kernel", "fc_in.bias", "fc_out.kernel")


@dataclass(frozen=True)
class EditConfig:
    """Which function-preserving edit to apply to the base before fine-tuning (claim C12).

    ``kind`` 'none' leaves the base as it is; ``layer`` is the block index (0-based); ``seed`` draws the
    rotation or permutation. ``layer`` is checked against the model by ``apply_edit`` / ``check_edit_fits``.
    """

    kind: Literal["none", "rotate_vo", "permute_heads", "permute_mlp"] = "none"
    layer: int = 0
    seed: int = 0

    def __post_init__(self):
        check(self.kind in EDIT_KINDS, "edit.kind", f"must be one of {list(EDIT_KINDS)}, got {self.kind!r}")
        check(isinstance(self.layer, int) and not isinstance(self.layer, bool) and self.layer >= 0, "edit.layer",
              f"must be a non-negative integer, got {self.layer!r}")
        check(isinstance(self.seed, int) and not isinstance(self.seed, bool) and self.seed >= 0, "edit.seed",
              f"must be a non-negative integer, got {self.seed!r}")


@dataclass(frozen=True, eq=False)
class EditRecord:
    """What an edit did, enough to undo it and to map updates and masks back to the original frame.

    - ``perm``: for ``permute_heads`` (length n_heads) and ``permute_mlp`` (length d_ff), new slot j
      holds old head / unit ``perm[j]``; None otherwise.
    - ``rotation_HDD``: for ``rotate_vo``, the per-head orthogonal matrices R_h (float64, read-only),
      V_h <- V_h R_h and O_h <- R_h^T O_h; None otherwise.
    Compared by identity (it holds an array).
    """

    kind: str
    layer: int
    n_heads: int
    perm: tuple[int, ...] | None = None
    rotation_HDD: np.ndarray | None = None


def haar_orthogonal(n: int, rng: np.random.Generator) -> np.ndarray:
    """A Haar-distributed orthogonal n x n matrix (float64): Q of the QR decomposition of a standard
    Gaussian matrix, columns multiplied by the signs of diag(R) so the law is exactly Haar on O(n)
    (Mezzadri 2007; without the sign fix LAPACK's QR is biased)."""
    G = rng.standard_normal((n, n))
    Q, R = np.linalg.qr(G)
    signs = np.where(np.diag(R) < 0, -1.0, 1.0)
    return Q * signs[None, :]


def random_derangement(n: int, rng: np.random.Generator) -> tuple[int, ...]:
    """A uniformly random permutation of range(n) with no fixed point (rejection sampling; n >= 2)."""
    if n < 2:
        raise ValueError(f"Argument `n` must be at least 2 for a derangement, got {n}.")
    while True:
        perm = rng.permutation(n)
        if np.all(perm != np.arange(n)):
            return tuple(int(p) for p in perm)


def _n_layers(flat: dict) -> int:
    layers = {int(m.group(1)) for name in flat if (m := re.match(r"blocks\.(\d+)\.", name))}
    return max(layers) + 1 if layers else 0


def _name(layer: int, suffix: str) -> str:
    return f"blocks.{layer}.{suffix}"


def edited_tensors(record: EditRecord) -> list[str]:
    """Dotted names of the tensors an edit touched (claim C12 compares these layers with untouched ones)."""
    suffixes = {"none": (), "rotate_vo": _ROTATE_TENSORS, "permute_heads": _HEAD_TENSORS,
                "permute_mlp": _MLP_TENSORS}[record.kind]
    return [_name(record.layer, s) for s in suffixes]


def check_edit_fits(cfg: EditConfig, model: ModelConfig) -> None:
    """Raise ConfigError naming ``edit.<field>`` when ``cfg`` cannot be applied to ``model`` (layer out
    of range, a head permutation with one head, an MLP permutation with one hidden unit); for a
    RunConfig's ``__post_init__``, so a bad edit fails before anything trains."""
    _check_fits(cfg, model.n_layers, model.n_heads, model.d_model, model.d_ff)


def _check_fits(cfg: EditConfig, n_layers: int, n_heads: int, d_model: int, d_ff: int) -> None:
    if cfg.kind == "none":
        return
    check(cfg.layer < n_layers, "edit.layer", f"must be below model.n_layers={n_layers}, got {cfg.layer}")
    if n_heads < 1 or d_model % n_heads:
        raise ValueError(f"Argument `n_heads` must divide d_model={d_model}, got {n_heads}.")
    if cfg.kind == "permute_heads":
        check(n_heads >= 2, "edit.kind", "'permute_heads' needs at least 2 heads")
    if cfg.kind == "permute_mlp":
        check(d_ff >= 2, "edit.kind", "'permute_mlp' needs at least 2 hidden units")


def apply_edit(flat: dict[str, np.ndarray], cfg: EditConfig, n_heads: int) -> tuple[dict[str, np.ndarray], EditRecord]:
    """Apply the function-preserving edit ``cfg`` (claim C12) to a flat parameter dict.

    Returns (edited_flat, record); the input is not modified and every array of the result is new.
    Rotations are computed in float64 and stored in the input dtype (float32): the edited model equals
    the original to float32 round-off; permutations are exact. The trainer calls this on the pretrained
    base before its bf16 rounding; after that rounding a rotated base equals the original only to bf16
    precision, a permuted one exactly.
    """
    if cfg.kind == "none":
        return {k: np.array(v) for k, v in flat.items()}, EditRecord("none", cfg.layer, n_heads)
    v_name = _name(cfg.layer, "attn.v.kernel")
    fc_name = _name(cfg.layer, "fc_in.kernel")
    n_layers = _n_layers(flat)
    check(cfg.layer < n_layers, "edit.layer", f"must be below model.n_layers={n_layers}, got {cfg.layer}")
    if v_name not in flat or fc_name not in flat:
        raise ConfigError(f"Field `edit.layer` names block {cfg.layer}, whose tensors are missing from the parameters.")
    d_model, d_ff = flat[v_name].shape[1], flat[fc_name].shape[1]
    _check_fits(cfg, n_layers, n_heads, d_model, d_ff)
    rng = np.random.default_rng(cfg.seed)
    dh = d_model // n_heads
    if cfg.kind == "rotate_vo":
        rot = np.stack([haar_orthogonal(dh, rng) for _ in range(n_heads)])
        rot.setflags(write=False)
        record = EditRecord("rotate_vo", cfg.layer, n_heads, rotation_HDD=rot)
    elif cfg.kind == "permute_heads":
        record = EditRecord("permute_heads", cfg.layer, n_heads, perm=random_derangement(n_heads, rng))
    else:
        record = EditRecord("permute_mlp", cfg.layer, n_heads, perm=random_derangement(d_ff, rng))
    return _transform(flat, record, inverse=False), record


def invert_params(edited_flat: dict[str, np.ndarray], record: EditRecord) -> dict[str, np.ndarray]:
    """Undo an edit: the original parameters from the edited ones (a new dict).

    Bitwise for permutations. For rotations W_v = W_v' R^T and W_o = R W_o', computed in float64 from the
    float32 edited weights and stored as float32: a few float32 ULPs of the row or column norm of the
    tensor (the tests allow 1e-6 times the tensor's largest entry).
    """
    return _transform(edited_flat, record, inverse=True)


def map_update_back(dW_flat: dict[str, np.ndarray], record: EditRecord) -> dict[str, np.ndarray]:
    """Map a parameter update made in the edited frame to the original frame (claim C12 analysis).

    Every edit E is linear, tensor by tensor, so dW_orig = E^{-1}(dW_edit) and the original model with
    W + dW_orig computes what the edited model computes with E(W) + dW_edit. Permutations move entries
    (exact); rotations give dV = dV' R^T and dO = R dO' per head (float64 math, result in dW's dtype).
    Tensors the edit did not touch pass through (copied). Any subset of tensors may be given.
    """
    return _transform(dW_flat, record, inverse=True)


def map_mask_back(mask_flat: dict[str, np.ndarray], record: EditRecord) -> dict[str, np.ndarray]:
    """Map boolean masks (e.g. bf16 changed masks) from the edited frame to the original frame.

    Exact index mapping for permutations (and the identity for 'none'). A rotation mixes the
    coordinates of a head, so a mask has no image: this raises ValueError. For rotations, rotate the
    fp32 update back with ``map_update_back`` and re-derive the changed mask from the bf16 rounding of
    W0_orig + dW_back (``theory.precision.changed_mask_bitwise``).
    """
    if record.kind == "rotate_vo":
        raise ValueError("A rotate_vo edit mixes coordinates, so a mask cannot be mapped back; "
                         "map the fp32 update with map_update_back and re-derive the mask.")
    return _transform(mask_flat, record, inverse=True)


# ----------------------------------------------------------------------------------------------
# the per-tensor maps


def _head_index(perm: tuple[int, ...], dh: int) -> np.ndarray:
    """Gather index over d_model columns: new column j*dh + i holds old column perm[j]*dh + i."""
    return (np.asarray(perm)[:, None] * dh + np.arange(dh)[None, :]).reshape(-1)


def _block_diag(rot_HDD: np.ndarray) -> np.ndarray:
    H, dh, _ = rot_HDD.shape
    R = np.zeros((H * dh, H * dh))
    for h in range(H):
        R[h * dh:(h + 1) * dh, h * dh:(h + 1) * dh] = rot_HDD[h]
    return R


def _tensor_maps(record: EditRecord) -> dict[str, tuple]:
    """Forward map of each touched tensor: ('take', axis, index), ('heads', axis, perm) or
    ('matmul', side, matrix)."""
    L = record.layer
    if record.kind == "rotate_vo":
        R = _block_diag(record.rotation_HDD)
        return {_name(L, "attn.v.kernel"): ("matmul", "right", R),   # V' = V R   (columns = v outputs)
                _name(L, "attn.o.kernel"): ("matmul", "left", R.T)}  # O' = R^T O (rows = o inputs)
    if record.kind == "permute_heads":
        return {_name(L, s): ("heads", axis, record.perm)
                for s, axis in (("attn.q.kernel", 1), ("attn.k.kernel", 1), ("attn.v.kernel", 1), ("attn.o.kernel", 0))}
    if record.kind == "permute_mlp":
        idx = np.asarray(record.perm)
        return {_name(L, "fc_in.kernel"): ("take", 1, idx),
                _name(L, "fc_in.bias"): ("take", 0, idx),
                _name(L, "fc_out.kernel"): ("take", 0, idx)}
    return {}


def _transform(flat: dict[str, np.ndarray], record: EditRecord, inverse: bool) -> dict[str, np.ndarray]:
    """Apply the edit of ``record`` (or its inverse) tensor by tensor; untouched tensors are copied."""
    maps = _tensor_maps(record)
    out = {}
    for name, value in flat.items():
        value = np.asarray(value)
        if name not in maps:
            out[name] = np.array(value)
            continue
        op, where, M = maps[name]
        if op == "heads":
            size = value.shape[where]
            if size % record.n_heads:
                raise ValueError(f"Tensor `{name}` has {size} entries on axis {where}, not divisible by {record.n_heads} heads.")
            op, M = "take", _head_index(M, size // record.n_heads)
        if op == "take":
            index = np.argsort(M) if inverse else M
            if value.shape[where] != len(index):
                raise ValueError(f"Tensor `{name}` has {value.shape[where]} entries on axis {where}, the edit expects {len(index)}.")
            out[name] = np.take(value, index, axis=where)
        else:
            if value.shape != M.shape:
                raise ValueError(f"Tensor `{name}` has shape {value.shape}, the rotation expects {M.shape}.")
            A = M.T if inverse else M  # the inverse of an orthogonal map is its transpose
            x = value.astype(np.float64)
            out[name] = (x @ A if where == "right" else A @ x).astype(value.dtype)
    return out
