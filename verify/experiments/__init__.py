"""Experiments: the named run sets the claims read, built from a profile, in one place.

- ``matched``: RL and SFT of every seed to the profile's target gain (``Matched``, read by most claims), and the
  runs beside it: RL far above the leash, dapo_clip, bf16 every step, RL from the random initialisation, the
  fixed-step learning-rate sweep;
- ``sweeps``: the regime map's grids (learning-rate phase grid, widths, optimizers);
- ``cases``: the case studies' fixed-length runs (C3, C4, C12, C14);
- ``adapters``: the adapter grid (C15, C16).

A run set is a structure whose leaves are ``RunSpec``s (``verify.runsets``); a claim declares one and
receives the same structure with finished runs. Adding a run set to an experiment is one field or one
key in its builder.
"""
