"""Real-checkpoint analyzer: ``python -m verify pair BASE TUNED`` and ``pairs BASE T1 T2 ...``.

Streams two (or more) safetensors checkpoints tensor by tensor through the metric functions of
``theory/`` that the toy claims use (docs/design.md, "Real checkpoints enter at the same metrics"):
bf16-aware update sparsity (claims C1, C2), spectrum drift and principal angles (C10), principal and
low-magnitude mask overlap and principal energy (C11), and, across runs from one base, the Jaccard
consistency of changed masks with consensus maps (C3).

Modules: ``layout`` (files, shards, index, tensor names), ``analyze`` (per-tensor metrics),
``outputs`` (JSON, CSV, Markdown, figures; atomic), ``cli`` (argument parsing, ``main``).
"""
