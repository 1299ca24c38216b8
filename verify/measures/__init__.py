"""Measures: finished run(s) in, numbers out, shared by every claim; no verdict, no figure.

Functions that take the verify call's ``Context`` (``ctx``) memoise their result on it, keyed by the run's
folder, so several claims of one call read each run once; the others are plain functions of arrays.

- ``weights``: (W0, W1) matrix pairs of a run, all matrices or the transformer-block ones;
- ``masks``: changed masks (bf16 export), principal and low-magnitude masks, in-mask shares, ULP strata;
- ``jaccard``, ``stripes``, ``temporal``: overlap across runs (C3), consensus stripes (C3), stability over
  training (C4);
- ``spectra``: the Gate II bounds, spectral drift, principal energy, rank-r energy shares;
- ``probe``: the one probe set of a run, rebuilt as the trainer builds it; ``curvature``: Fisher products
  and the dense Fisher on it;
- ``kl_steps``: per-step KL series from metrics.jsonl; ``sparsity``: sparsity, probes and the half-ULP
  readout; ``training``: gains, KL curves, collapse; ``frames``: masks of edited-base runs (C12);
- ``regime_map``: every regime-map metric of one run; ``adapter_grid``: the adapter grid's table.
"""
