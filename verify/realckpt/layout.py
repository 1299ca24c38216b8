"""Real checkpoint layouts: safetensors files, shards with an index, tensor names.

A checkpoint is one of
- a ``.safetensors`` file;
- a directory holding ``model.safetensors.index.json`` (its ``weight_map`` names the shard of each
  tensor) and the shards;
- a directory holding ``model.safetensors``.

A safetensors file is an 8-byte little-endian header length N, N bytes of JSON (name -> dtype, shape,
data_offsets [begin, end) relative to the data section; optional ``__metadata__``), then the data.
The header is read and checked here (sizes, bounds, overlaps) so that a truncated or lying file stops
with one sentence naming the file and the tensor; tensor data are then read through ``numpy.memmap``
(bf16 as ``ml_dtypes.bfloat16``), so nothing is loaded before it is used.

Tensor names are parsed into a layer index and a module kind, for the usual Hugging Face names
(``model.layers.{i}.self_attn.q_proj.weight``, ``mlp.gate_proj``, ``embed_tokens``, ``lm_head``,
``*norm*``) and this suite's own (``blocks.{i}.attn.q.kernel``, ``fc_in``, ``fc_out``, ``embed``,
``pos_embed``, ``unembed``, ``ln1``/``ln2``/``ln_f``). This suite stores Linear kernels as (in, out)
(``toy_models.transformer.weight_matrices`` transposes them); Hugging Face ``*.weight`` matrices are
already (out, in).
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import ml_dtypes
import numpy as np

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
MAX_HEADER_BYTES = 100 * 2**20

DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "U8": np.dtype(np.uint8),
    "I8": np.dtype(np.int8),
    "U16": np.dtype(np.uint16),
    "I16": np.dtype(np.int16),
    "U32": np.dtype(np.uint32),
    "I32": np.dtype(np.int32),
    "U64": np.dtype(np.uint64),
    "I64": np.dtype(np.int64),
    "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "F32": np.dtype(np.float32),
    "F64": np.dtype(np.float64),
    "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn),
    "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2),
}
FLOAT_DTYPES = ("BF16", "F16", "F32", "F64")
"""Dtypes the analyzer reads as weights; other tensors (integers, fp8) are listed as skipped."""

KINDS = ("q", "k", "v", "o", "gate", "up", "down", "embed", "head", "norm", "other")


class BadInput(ValueError):
    """A checkpoint (or argument) that cannot be analysed; the message is one sentence naming the file or tensor."""


# ----------------------------------------------------------------------------------------------
# reading


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor lives: file, dtype name (safetensors spelling), shape, absolute byte offset."""

    name: str
    file: Path
    dtype: str
    shape: tuple[int, ...]
    offset: int
    nbytes: int

    @property
    def size(self) -> int:
        """Number of elements."""
        return math.prod(self.shape)

    @property
    def is_float(self) -> bool:
        """True for the weight dtypes the analyzer reads (BF16, F16, F32, F64)."""
        return self.dtype in FLOAT_DTYPES


def read_header(path: Path) -> tuple[dict[str, TensorInfo], dict]:
    """Parse and check the header of one safetensors file: ({name: TensorInfo}, metadata).

    Checks, each failing with ``BadInput`` naming the file (and tensor): the file exists and is long
    enough, the header length fits in the file, the header is a JSON object, every entry has a known
    dtype, a shape of non-negative integers and data_offsets whose span equals the shape's byte size,
    every tensor lies inside the data section (else the file is truncated or the header lies), and no
    two tensors overlap.
    """
    path = Path(path)
    if not path.exists():
        raise BadInput(f"File {path} does not exist.")
    if not path.is_file():
        raise BadInput(f"{path} is not a file.")
    size = path.stat().st_size
    if size < 8:
        raise BadInput(f"File {path} is not a safetensors file: it has {size} bytes, fewer than the 8-byte header length.")
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        if n > MAX_HEADER_BYTES or n > size - 8:
            raise BadInput(f"File {path} is not a safetensors file (or is truncated): its header length {n} does not fit in its {size} bytes.")
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BadInput(f"File {path} is not a safetensors file: its header is not valid JSON.") from None
    if not isinstance(header, dict):
        raise BadInput(f"File {path} is not a safetensors file: its header is not a JSON object.")
    meta = header.pop("__metadata__", None) or {}
    data_start, data_size = 8 + n, size - 8 - n
    out: dict[str, TensorInfo] = {}
    for name, entry in header.items():
        where = f"Tensor `{name}` in {path}"
        if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= set(entry):
            raise BadInput(f"{where} has a header entry without dtype, shape and data_offsets.")
        dtype, shape, offs = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in DTYPES:
            raise BadInput(f"{where} has unknown dtype {dtype!r}.")
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise BadInput(f"{where} has an invalid shape {shape!r}.")
        if not (isinstance(offs, list) and len(offs) == 2 and all(isinstance(o, int) for o in offs) and 0 <= offs[0] <= offs[1]):
            raise BadInput(f"{where} has invalid data_offsets {offs!r}.")
        need = math.prod(shape) * DTYPES[dtype].itemsize
        if offs[1] - offs[0] != need:
            raise BadInput(
                f"{where} has data_offsets {offs} spanning {offs[1] - offs[0]} bytes, but shape {tuple(shape)} of {dtype} needs {need}: the header lies about offsets."
            )
        if offs[1] > data_size:
            raise BadInput(
                f"{where} ends at byte {offs[1]} of a data section of {data_size} bytes: the file is truncated or its header lies about offsets."
            )
        out[name] = TensorInfo(name, path, dtype, tuple(shape), data_start + offs[0], need)
    spans = sorted((t.offset, t.offset + t.nbytes, t.name) for t in out.values() if t.nbytes)
    for (b0, e0, n0), (b1, e1, n1) in zip(spans, spans[1:]):
        if b1 < e0:
            raise BadInput(f"Tensors `{n0}` and `{n1}` in {path} overlap: the header lies about offsets.")
    return out, meta


class Checkpoint:
    """One checkpoint (file, single-file directory or sharded directory with an index), read lazily.

    ``tensors`` maps every tensor name to its ``TensorInfo``; ``array(name)`` returns a read-only memory
    map of that tensor (nothing is read until it is used); ``config`` is the ``config.json`` beside the
    weights when there is one (used only to say whether the head is tied to the embedding).
    """

    def __init__(self, path, role: str = "checkpoint"):
        self.path = Path(path)
        self.role = role
        self.tensors: dict[str, TensorInfo] = {}
        self.config: dict = {}
        p = self.path
        if not p.exists():
            raise BadInput(f"The {role} path {p} does not exist.")
        if p.is_dir():
            index, single = p / INDEX_FILE, p / SINGLE_FILE
            if index.exists():
                self._read_index(index)
            elif single.exists():
                self.tensors, _ = read_header(single)
            else:
                raise BadInput(f"The {role} directory {p} holds neither {SINGLE_FILE} nor {INDEX_FILE}.")
            cfg = p / "config.json"
            if cfg.exists():
                try:
                    self.config = json.loads(cfg.read_text())
                except (OSError, ValueError):
                    self.config = {}
        else:
            self.tensors, _ = read_header(p)
        self.files = sorted({t.file for t in self.tensors.values()})

    def _read_index(self, index: Path) -> None:
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
            if not isinstance(weight_map, dict):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise BadInput(f"Index file {index} is not valid JSON with a `weight_map` object.") from None
        headers: dict[str, dict[str, TensorInfo]] = {}
        for name, shard in sorted(weight_map.items()):
            if not isinstance(shard, str):
                raise BadInput(f"Index file {index} maps tensor `{name}` to {shard!r}, not a file name.")
            if shard not in headers:
                shard_path = index.parent / shard
                if not shard_path.exists():
                    raise BadInput(f"Shard {shard_path} named in index file {index} does not exist.")
                headers[shard], _ = read_header(shard_path)
            if name not in headers[shard]:
                raise BadInput(f"Index file {index} puts tensor `{name}` in shard {index.parent / shard}, whose header lacks it.")
            self.tensors[name] = headers[shard][name]

    @property
    def tied_embeddings(self) -> bool | None:
        """``tie_word_embeddings`` from config.json (None when there is no config or no such key)."""
        v = self.config.get("tie_word_embeddings") if isinstance(self.config, dict) else None
        return None if v is None else bool(v)

    def read(self, name: str, start: int, count: int, out: np.ndarray | None = None) -> np.ndarray:
        """Elements [start, start + count) of a tensor in its stored dtype (flat, C order), read with one ``readinto``
        (into ``out`` when given: a reused buffer of at least ``count`` elements of that dtype). Unlike ``array``
        nothing stays mapped, so memory stays at the buffer's size however much is read."""
        return read_elements(self.tensors[name], start, count, out)

    def array(self, name: str) -> np.ndarray:
        """The tensor as a read-only ``numpy.memmap`` in its stored dtype and shape (bf16 via ml_dtypes)."""
        t = self.tensors[name]
        dtype = DTYPES[t.dtype]
        if t.size == 0:
            return np.zeros(t.shape, dtype)
        mm = np.memmap(t.file, dtype=dtype, mode="r", offset=t.offset, shape=(t.size,))
        return mm.reshape(t.shape)


def read_elements(info: TensorInfo, start: int, count: int, out: np.ndarray | None = None) -> np.ndarray:
    """Elements [start, start + count) of the tensor ``info`` in its stored dtype (see ``Checkpoint.read``)."""
    dtype = DTYPES[info.dtype]
    buf = np.empty(count, dtype) if out is None else out[:count]
    if count == 0:
        return buf
    with open(info.file, "rb", buffering=0) as f:
        f.seek(info.offset + start * dtype.itemsize)
        got = f.readinto(memoryview(buf.view(np.uint8)))
    if got != count * dtype.itemsize:
        raise BadInput(f"Tensor `{info.name}` in {info.file} could not be read: the file ended early (it changed after its header was read).")
    return buf


# ----------------------------------------------------------------------------------------------
# names

_LAYER = re.compile(r"(?:^|\.)(?:layers|layer|h|blocks|block)\.(\d+)(?=\.|$)")
_SUFFIXES = {"weight", "bias", "kernel", "embedding", "scale"}
_NORM = re.compile(r"(norm|^ln$|^ln_?[0-9a-z]{1,4}$)")
_ATTN_CONTEXT = {"attn", "self_attn", "attention", "self_attention", "cross_attn"}
_TOKENS = {
    "q": {"q_proj", "q", "wq", "query", "q_lin", "to_q"},
    "k": {"k_proj", "k", "wk", "key", "k_lin", "to_k"},
    "v": {"v_proj", "v", "wv", "value", "v_lin", "to_v"},
    "o": {"o_proj", "o", "out_proj", "o_lin", "to_out"},
    "gate": {"gate_proj", "w1", "w_gate"},
    "up": {"up_proj", "w3", "fc_in", "fc1", "c_fc", "dense_h_to_4h", "w_up", "wi"},
    "down": {"down_proj", "w2", "fc_out", "fc2", "dense_4h_to_h", "w_down"},
    "embed": {"embed_tokens", "embed", "wte", "wpe", "word_embeddings", "position_embeddings", "pos_embed",
              "embed_positions", "tok_embeddings", "embeddings"},
    "head": {"lm_head", "unembed", "embed_out"},
}
_FUSED = {"c_attn", "qkv_proj", "query_key_value", "wqkv", "qkv", "gate_up_proj", "w13"}


def parse_name(name: str) -> tuple[int | None, str]:
    """(layer index or None, module kind) of a tensor name; kind is one of ``KINDS``.

    Layer: the integer after ``layers``/``layer``/``h``/``blocks``/``block``. Kind: ``norm`` when a
    component names a norm (``*norm*``, ``ln1``, ``ln_f``...); otherwise the last component that names
    a module: q/k/v/o projections (``q_proj``, this suite's ``attn.q``, ``wq``...), gate/up/down
    (``gate_proj``, ``up_proj``, ``down_proj``, ``fc_in`` -> up, ``fc_out`` -> down, ``w1``/``w3``/``w2``),
    ``embed`` (``embed_tokens``, ``embed``, ``pos_embed``, ``wte``...), ``head`` (``lm_head``,
    ``unembed``, a top-level ``output``); ``wo``/``dense``/``c_proj`` are o inside attention and down
    elsewhere; fused projections (``qkv_proj``, ``c_attn``...) and anything else are ``other``.
    """
    m = _LAYER.search(name)
    layer = int(m.group(1)) if m else None
    parts = name.lower().split(".")
    body = parts[:-1] if len(parts) > 1 and parts[-1] in _SUFFIXES else parts
    if any(_NORM.search(p) for p in body):
        return layer, "norm"
    in_attn = any(p in _ATTN_CONTEXT for p in body)
    for p in reversed(body):
        if p in _FUSED:
            return layer, "other"
        for kind, tokens in _TOKENS.items():
            if p in tokens:
                return layer, kind
        if p in ("wo", "dense", "c_proj"):
            return layer, "o" if in_attn else "down"
    if body and body[0] == "output" and len(body) == 1:
        return layer, "head"
    return layer, "other"


def is_kernel(name: str) -> bool:
    """True for this suite's Linear kernels (``*.kernel``), stored (in, out) and analysed as (out, in)."""
    return name.endswith(".kernel")


def order_key(name: str) -> tuple:
    """Sort key: embeddings first, then layers in order, then the rest (final norm, head), then by name."""
    layer, kind = parse_name(name)
    if layer is not None:
        return (1, layer, name)
    return (0 if kind == "embed" else 2, 0, name)


# ----------------------------------------------------------------------------------------------
# writing (exports, tests and benchmarks)


def _dtype_name(dtype) -> str:
    dtype = np.dtype(dtype)
    for k, v in DTYPES.items():
        if v == dtype:
            return k
    raise ValueError(f"Argument `dtype` {dtype} has no safetensors name.")


def write_safetensors(path, specs: Iterable[tuple[str, tuple, object]], produce: Callable[[str], np.ndarray],
                      metadata: Mapping[str, str] | None = None) -> Path:
    """Write a safetensors file one tensor at a time, atomically (temporary file, then rename).

    ``specs``: (name, shape, numpy dtype) in file order; ``produce(name)`` returns that tensor (called
    once per tensor, so a generator never holds more than one tensor). Returns the path.
    """
    path = Path(path)
    specs = [(n, tuple(int(d) for d in s), np.dtype(dt)) for n, s, dt in specs]
    header: dict = {"__metadata__": dict(metadata)} if metadata else {}
    pos = 0
    for name, shape, dt in specs:
        nbytes = math.prod(shape) * dt.itemsize
        header[name] = {"dtype": _dtype_name(dt), "shape": list(shape), "data_offsets": [pos, pos + nbytes]}
        pos += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(len(raw).to_bytes(8, "little"))
            f.write(raw)
            for name, shape, dt in specs:
                arr = np.asarray(produce(name))
                if arr.shape != shape or arr.dtype != dt:
                    raise ValueError(f"produce({name!r}) gave {arr.dtype}{arr.shape}, the spec says {dt}{shape}.")
                f.write(arr.tobytes(order="C"))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def save_safetensors(path, flat: Mapping[str, np.ndarray]) -> Path:
    """Write a dict of arrays (bf16 included) as one safetensors file, atomically."""
    arrays = {k: np.asarray(v) for k, v in flat.items()}
    return write_safetensors(path, [(k, a.shape, a.dtype) for k, a in arrays.items()], arrays.__getitem__)


def write_sharded(directory, specs: list[tuple[str, tuple, object]], produce: Callable[[str], np.ndarray],
                  max_shard_bytes: int) -> Path:
    """Write a sharded checkpoint (``model-0000i-of-0000N.safetensors`` + ``model.safetensors.index.json``).

    Tensors go to shards in ``specs`` order, a new shard starting when the next tensor would pass
    ``max_shard_bytes``. The index is written last, so a directory without it is incomplete.
    """
    directory = Path(directory)
    groups: list[list] = [[]]
    used = 0
    for spec in specs:
        nbytes = math.prod(spec[1]) * np.dtype(spec[2]).itemsize
        if groups[-1] and used + nbytes > max_shard_bytes:
            groups.append([])
            used = 0
        groups[-1].append(spec)
        used += nbytes
    weight_map, total = {}, 0
    for i, group in enumerate(groups):
        fname = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
        write_safetensors(directory / fname, group, produce)
        for name, shape, dt in group:
            weight_map[name] = fname
            total += math.prod(shape) * np.dtype(dt).itemsize
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    tmp = directory / f".{INDEX_FILE}.tmp"
    tmp.write_text(json.dumps(index, indent=2) + "\n")
    os.replace(tmp, directory / INDEX_FILE)
    return directory
