"""Low-rank adapters (LoRA, PiSSA, MiLoRA and an off-principal LoRA) as pure functions over NNX params.

docs/science.md claims C15 (PiSSA gives no gain over LoRA in RLVR and collapses earlier) and C16 (RL
updates are small and off-principal, so low-rank adapters can match full RL), section 5 (PiSSA,
MiLoRA, the PEFT-for-RLVR comparison).

Kinds (``AdapterConfig.kind``), each acting on the targeted kernels only
- ``none``: full fine-tuning. ``init_adapter`` returns ``(params, params)`` and ``merge`` returns the
  adapter, which is the whole parameter state, so a trainer can run every kind through one loop.
- ``lora``: kernel = W + s A B with s = alpha / rank; A Gaussian with standard deviation
  1 / sqrt(in) (LeCun normal, drawn from ``fold_in(key, i)`` with i the kernel's position in the
  flat params, so a matrix's draw does not depend on which others are targeted), B zero, so the model is
  unchanged at step 0 and bitwise equal to the base.
- ``pissa``: A, B from the top-``rank`` singular triplets of W: s A B = W_r, the rank-r truncated SVD,
  and the frozen kernel is the residual W - s A B. The factors carry sqrt(sigma / s) on each side, so
  s A B = W_r for every alpha (PiSSA's own setting alpha = rank gives s = 1 and sqrt(sigma)).
- ``milora``: the same from the bottom-``rank`` (minor) singular triplets.
- ``offprincipal`` (the geometry-aware candidate): LoRA whose update is projected off the top-``k``
  singular subspaces of W0 on both sides, dW = (I - U_k U_k^T) (s B^T A^T) (I - V_k V_k^T) in the
  (out, in) frame. Initialised like LoRA; the frozen kernel is W0 itself.

Residual precision. The pissa / milora residual W - s A B is kept in float32, computed with the same
jitted product that ``merge`` uses, so merging returns W to within a float32 rounding of each entry.
A common implementation stores the residual in bf16; that changes the model before training starts
(by up to half a bf16 ULP of every residual entry), an error ``tests/test_adapters.py`` measures
against the fp32 residual (on the test model: about 1e-2 of logits against about 1e-6).

Kernel frame. NNX stores a Linear kernel as K (in, out) and computes y = x K. The paper's matrix is
W = K^T (out, in), as in ``transformer.weight_matrices``. SVDs are taken of W = U S V^T (U: out x r,
V: in x r, via ``theory.spectral.top_k_subspaces``), so K = V S U^T, and the factors are stored in the
kernel frame: A_ir = V_r sqrt(S_r / s) (in, rank), B_ro = sqrt(S_r / s) U_r^T (rank, out), i.e.
s A B = (U_r S_r V_r^T)^T. This is NNX's own LoRA layout (``nnx.LoRA``: x @ lora_a @ lora_b), which the
tests use as an independent oracle. For ``offprincipal`` the input-side projector uses V_k and the
output-side one U_k: kernel update = s (I - V_k V_k^T) A B (I - U_k U_k^T).

Pytrees and dtypes. ``frozen`` is an ``nnx.State`` shaped like the params, float32. ``adapter`` is a
plain dict ``{matrix name: {"A": A_ir, "B": B_ro}}`` of float32 jax arrays, keyed by the stable matrix
names of ``transformer.matrix_name`` (``"block0/attn/q"``, ``"block1/fc_in"``); for ``none`` it is the
params state itself. Only ``adapter`` is trained; storage mode "bf16 every step" is
``storage.round_tree_bf16(adapter)`` after each update, plus ``bf16_factors=True`` at init so the
initial factors are bf16-exact and the residual is computed from the rounded factors (the model is
still unchanged at step 0).

Why training goes through ``merge``. One model definition serves every kind: the loss is
``apply(graphdef, merge(frozen, adapter, cfg, frames), ...)`` differentiated w.r.t. ``adapter`` (with
``frozen`` and ``frames`` passed in as arguments, not closed over), so gradients
reach the factors only, and the merged state that a snapshot stores is by construction the model
that ran. Every existing metric (sparsity, NSS, angles, overlaps, curvature) then applies to adapter
runs unchanged. The merge costs one (in, r) x (r, out) product per target. ``offprincipal`` also needs
W0's top-k frames: compute them once with ``principal_frames(frozen, cfg)`` and pass them to every
``merge`` (without them ``merge`` rebuilds them by SVD on each call: same result, but on the default
small model on CPU that took the merge from 0.7 ms to 14 ms and a loss gradient from 95 to 166 ms).

What the candidate predicts. The off-principal adapter cannot move the principal part of W0: its
merged update has zero principal energy at k (docs/science.md section 4), and because W0 = U_k S_k V_k^T +
(the complement block) and the update lives in the complement block, the top-k singular values and
vectors of W0 stay exact singular triplets of W1 (they remain the top k while the complement's norm
stays below sigma_k): no spectral shift, no principal rotation. Under the paper's Gate II (RL is
steered off principal, high-curvature directions), forbidding those directions costs RL little: the
off-principal adapter should keep nearly all of LoRA's RL gain (at a matched KL or step count),
while SFT, which moves principal weights and rotates top subspaces, should lose clearly more of its
gain. If RL loses as much as SFT, the steering claim fails at this scale. PiSSA, which trains exactly
the principal directions, is predicted to gain no more than LoRA under RL (C15); MiLoRA starts in the
minor directions the theory says RL prefers.

Two consequences of projecting inside ``merge`` rather than the gradient: the invariant holds for any
optimizer and after bf16 rounding of the factors (Adam's per-coordinate scaling would break a
projected gradient), and the components of A in span(V_k) and of B in span(U_k) have no effect and
get zero gradient (only weight decay moves them). The zero principal energy is exact for the fp32
merged update; a bf16 export of W0 + dW rounds it entry by entry, so the released change is the
bf16-visible part of a projected update, not itself a projection.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from theory.spectral import top_k_subspaces
from toy_models.config import check
from toy_models.storage import round_tree_bf16
from toy_models.transformer import flat_params, matrix_name, param_path, unflatten_params

KINDS = ("none", "lora", "pissa", "milora", "offprincipal")
TARGETS = ("q", "k", "v", "o", "fc_in", "fc_out")
_HIGHEST = jax.lax.Precision.HIGHEST


@dataclass(frozen=True)
class AdapterConfig:
    """Which adapter to train (claims C15, C16): kind, rank, scaling alpha / rank, targeted module kinds,
    and ``k``, the principal subspace the ``offprincipal`` kind never moves (ignored by other kinds)."""

    kind: Literal["none", "lora", "pissa", "milora", "offprincipal"] = "none"
    rank: int = 8
    alpha: float = 16.0
    targets: tuple[str, ...] = TARGETS
    k: int = 8

    def __post_init__(self):
        check(self.kind in KINDS, "adapter.kind", f"must be one of {list(KINDS)}, got {self.kind!r}")
        check(isinstance(self.rank, (int, np.integer)) and not isinstance(self.rank, bool) and self.rank >= 1,
              "adapter.rank", f"must be a positive integer, got {self.rank!r}")
        check(isinstance(self.alpha, (int, float)) and not isinstance(self.alpha, bool)
              and math.isfinite(self.alpha) and self.alpha > 0,
              "adapter.alpha", f"must be positive and finite, got {self.alpha!r}")
        check(isinstance(self.targets, tuple) and len(self.targets) > 0, "adapter.targets",
              f"must be a non-empty tuple of module kinds among {list(TARGETS)}, got {self.targets!r}")
        unknown = [t for t in self.targets if t not in TARGETS]
        check(not unknown, "adapter.targets", f"must name module kinds among {list(TARGETS)}, got unknown {unknown}")
        check(len(set(self.targets)) == len(self.targets), "adapter.targets", f"must not repeat a module kind, got {self.targets}")
        check(isinstance(self.k, (int, np.integer)) and not isinstance(self.k, bool) and self.k >= 1,
              "adapter.k", f"must be a positive integer, got {self.k!r}")

    @property
    def scale(self) -> float:
        """s = alpha / rank, the factor of the low-rank product A B in every kind."""
        return float(self.alpha) / float(self.rank)


def target_kind(dotted: str) -> str | None:
    """Module kind ('q', 'k', 'v', 'o', 'fc_in', 'fc_out') of a block kernel's dotted name, else None."""
    parts = dotted.split(".")
    if parts[0] != "blocks" or parts[-1] != "kernel" or parts[-2] not in TARGETS:
        return None
    return parts[-2]


def _check_shape(cfg: AdapterConfig, name: str, n_in: int, n_out: int) -> None:
    """Rank (and k for offprincipal) must fit the (in, out) kernel ``name``."""
    limit = min(n_in, n_out)
    check(cfg.rank <= limit, "adapter.rank",
          f"must be at most {limit} for {name} ({n_in} in, {n_out} out), got {cfg.rank}")
    if cfg.kind == "offprincipal":
        check(cfg.k < limit, "adapter.k",
              f"must be below {limit} for {name} ({n_in} in, {n_out} out) so a complement is left, got {cfg.k}")


def validate_for_model(cfg: AdapterConfig, model_cfg) -> None:
    """Refuse (ConfigError naming ``adapter.rank`` or ``adapter.k``) an adapter that does not fit the
    targeted matrices of a ``ModelConfig``; call it before training starts."""
    if cfg.kind == "none":
        return
    d, f = model_cfg.d_model, model_cfg.d_ff
    shapes = {"q": (d, d), "k": (d, d), "v": (d, d), "o": (d, d), "fc_in": (d, f), "fc_out": (f, d)}
    for t in cfg.targets:
        _check_shape(cfg, t, *shapes[t])


@jax.jit
def _low_rank_io(A_ir, B_ro, scale):
    """s A B in the kernel frame (in, out), float32 with full-precision products."""
    return scale * jnp.matmul(A_ir, B_ro, precision=_HIGHEST)


def _principal_frames(kernel_io, k: int):
    """{"V": V_ik, "U": U_ok}: top-k right / left singular vectors of W = kernel^T, i.e. the kernel's
    input / output sides."""
    U_ok, _, V_ik = top_k_subspaces(jax.lax.stop_gradient(kernel_io).T, k)
    return {"V": V_ik, "U": U_ok}


def _off_principal_io(A_ir, B_ro, scale, frames):
    """s (I - V_k V_k^T) A B (I - U_k U_k^T): the kernel-frame form of (I - U_k U_k^T) dW (I - V_k V_k^T)."""
    V_ik, U_ok = frames["V"], frames["U"]
    A_perp = A_ir - jnp.matmul(V_ik, jnp.matmul(V_ik.T, A_ir, precision=_HIGHEST), precision=_HIGHEST)
    B_perp = B_ro - jnp.matmul(jnp.matmul(B_ro, U_ok, precision=_HIGHEST), U_ok.T, precision=_HIGHEST)
    return _low_rank_io(A_perp, B_perp, scale)


def principal_frames(frozen, cfg: AdapterConfig):
    """W0's top-k singular frames that the ``offprincipal`` kind projects off (claim C16, docs/science.md
    section 4 principal subspaces): ``{matrix name: {"V": V_ik (in, k), "U": U_ok (out, k)}}`` of every
    targeted kernel of ``frozen``, or None for other kinds. Compute once and pass to ``merge``: rebuilding
    them inside every merge costs an SVD per matrix per step."""
    if cfg.kind != "offprincipal":
        return None
    out = {}
    for path, v in nnx.to_flat_state(frozen):
        dotted = param_path(path)
        if target_kind(dotted) in cfg.targets:
            out[matrix_name(dotted)] = _principal_frames(v[...], cfg.k)
    return out


def svd_factors(kernel_io, rank: int, scale: float, which: Literal["top", "bottom"]):
    """PiSSA (``which="top"``) / MiLoRA (``"bottom"``) factors of a kernel: (A_ir, B_ro) with
    s A B = (sum over the chosen ``rank`` singular triplets of W = kernel^T of sigma_i u_i v_i^T)^T.

    The SVD is of the (out, in) matrix W; A_ir = V_r sqrt(S_r / s), B_ro = sqrt(S_r / s) U_r^T.
    """
    W_oi = jnp.asarray(kernel_io, jnp.float32).T
    full = min(W_oi.shape)
    U_of, s_f, V_if = top_k_subspaces(W_oi, full)
    idx = np.arange(rank) if which == "top" else np.arange(full - rank, full)
    root_r = jnp.sqrt(s_f[idx] / scale)
    A_ir = V_if[:, idx] * root_r
    B_ro = (U_of[:, idx] * root_r).T
    return A_ir.astype(jnp.float32), B_ro.astype(jnp.float32)


def init_adapter(params, cfg: AdapterConfig, key, *, bf16_factors: bool = False):
    """(frozen, adapter) for ``cfg`` (claims C15, C16): frozen targeted kernels (W for lora and
    offprincipal, the fp32 residual W - s A B for pissa / milora) and the trainable factors.

    ``merge(frozen, adapter, cfg)`` equals ``params`` at step 0 (exactly for lora / offprincipal, to a
    float32 rounding of each kernel entry for pissa / milora). ``bf16_factors=True`` rounds the initial
    factors to bf16 before the residual is formed (for the "bf16 every step" storage mode).
    Raises ConfigError naming ``adapter.rank`` / ``adapter.k`` when they do not fit a targeted kernel.
    """
    if cfg.kind == "none":
        return params, params
    leaves, adapter = [], {}
    for i, (path, v) in enumerate(nnx.to_flat_state(params)):  # i: the kernel's fixed position, its key
        dotted = param_path(path)
        kernel = jnp.asarray(v[...], jnp.float32)
        if target_kind(dotted) not in cfg.targets:
            leaves.append((path, v.replace(kernel)))
            continue
        n_in, n_out = kernel.shape
        name = matrix_name(dotted)
        _check_shape(cfg, name, n_in, n_out)
        if cfg.kind in ("lora", "offprincipal"):
            A_ir = jax.random.normal(jax.random.fold_in(key, i), (n_in, cfg.rank), jnp.float32) / math.sqrt(n_in)
            B_ro = jnp.zeros((cfg.rank, n_out), jnp.float32)
        else:
            A_ir, B_ro = svd_factors(kernel, cfg.rank, cfg.scale, "top" if cfg.kind == "pissa" else "bottom")
        factors = {"A": A_ir, "B": B_ro}
        if bf16_factors:
            factors = round_tree_bf16(factors)
        if cfg.kind in ("pissa", "milora"):
            kernel = kernel - _low_rank_io(factors["A"], factors["B"], cfg.scale)
        leaves.append((path, v.replace(kernel)))
        adapter[name] = factors
    return nnx.from_flat_state(leaves), adapter


def merge(frozen, adapter, cfg: AdapterConfig, frames=None):
    """The parameter state the model runs with (claims C15, C16): each targeted kernel is its frozen
    part plus the scaled low-rank update s A B, projected off W0's top-k singular subspaces for
    ``offprincipal``; every other parameter is ``frozen``'s array itself. Pure and jit-able; gradients
    w.r.t. ``adapter`` reach the factors only. For ``none`` it returns ``adapter``.

    ``frames`` (``offprincipal`` only) is ``principal_frames(frozen, cfg)``; when None they are rebuilt
    from ``frozen`` by SVD here (same result, one SVD per targeted matrix per call)."""
    if cfg.kind == "none":
        return adapter
    leaves, used = [], 0
    for path, v in nnx.to_flat_state(frozen):
        name = matrix_name(param_path(path))
        if name in adapter:
            f = adapter[name]
            if cfg.kind == "offprincipal":
                fr = frames[name] if frames is not None else _principal_frames(v[...], cfg.k)
                update = _off_principal_io(f["A"], f["B"], cfg.scale, fr)
            else:
                update = _low_rank_io(f["A"], f["B"], cfg.scale)
            v = v.replace(v[...] + update)
            used += 1
        leaves.append((path, v))
    if used != len(adapter):
        raise ValueError(f"Argument `adapter` holds {len(adapter)} matrices but only {used} match kernels of `frozen`.")
    return nnx.from_flat_state(leaves)


def adapter_transform(cfg: AdapterConfig, frozen):
    """Gradient transformation the trainer chains before its optimizer for ``cfg``; None for every kind
    here (the offprincipal constraint is a projection inside ``merge``, not a gradient rule)."""
    return None


def flat_adapter(adapter) -> dict[str, np.ndarray]:
    """{name: numpy array} of an adapter for checkpoints: ``"block0/attn/q/A"`` style keys, or the
    ``flat_params`` names when the adapter is a whole params state (kind ``none``)."""
    if isinstance(adapter, nnx.State):
        return flat_params(adapter)
    return {f"{name}/{f}": np.asarray(x) for name, factors in adapter.items() for f, x in factors.items()}


def unflatten_adapter(template, flat: dict):
    """Inverse of ``flat_adapter``: an adapter shaped like ``template`` holding the arrays of ``flat``."""
    if isinstance(template, nnx.State):
        return unflatten_params(template, flat)
    missing = [f"{n}/{f}" for n, fs in template.items() for f in fs if f"{n}/{f}" not in flat]
    if missing:
        raise ValueError(f"Checkpoint lacks adapter tensor `{missing[0]}`.")
    return {n: {f: jnp.asarray(flat[f"{n}/{f}"], jnp.float32) for f in fs} for n, fs in template.items()}


__all__ = [
    "KINDS", "TARGETS", "AdapterConfig", "target_kind", "validate_for_model", "svd_factors",
    "init_adapter", "principal_frames", "merge", "adapter_transform", "flat_adapter", "unflatten_adapter",
]
