"""Control inputs: planted and synthetic data on which a claim's own decision rule must come out REPRODUCED
(positive control) or not (negative control), so that the rule is seen to flip both ways.

- ``policies``: synthetic categorical policies and steps (Gate I);
- ``updates``: planted weight updates and drifts (Gate II, Gate III, the sparsity predictor);
- ``masks``: planted changed masks (C3, C4, C11, C12);
- ``numbers``: planted per-seed numbers for rules on plain numbers (phase, width, optimizer, C14, C15, C16).

Every generator draws from its own fixed seed, independent of the profile. The claim runs its rule on the
control input and records the outcome as a typed ``verify.registry.Control``.
"""
