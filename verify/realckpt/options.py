"""Settings of the real-checkpoint analyzer and the published numbers its reading compares against."""

from __future__ import annotations

import re
from dataclasses import dataclass

from verify.realckpt.layout import BadInput

SWEEP = (16, 64, 256, 512)
"""Default ranks k of the principal-energy sweep (each clipped to min(m, n) of the matrix)."""
INTRUDER_COS = 0.5
"""A tuned top-k singular vector is an intruder when its largest |cosine| with the base's top-K vectors is below this."""
ANGLE_GAP_FACTOR = 2.0
"""A principal angle at k is determined when the gap sigma_k - sigma_k+1 of W0 exceeds this times ||dW||_2
(then the Wedin-type bound sin theta <= 2 ||dW||_2 / gap is below 1); otherwise it is flagged."""
PAPER_RL_BAND = (0.36, 0.92)
"""bf16 update sparsity of published RL(VR) checkpoints (the paper, claim C1)."""
PAPER_SFT_BAND = (0.006, 0.188)
"""bf16 update sparsity of published SFT checkpoints (the paper, claim C1)."""
MIN_MATCHED = 0.9
"""Below this share of parameters matched by name the analysis is partial: loud warning and exit status 3."""


@dataclass(frozen=True)
class Options:
    """Analysis settings: rank k of the top subspaces and principal mask, mask share alpha, probe thresholds,
    name filters, chunk size, energy sweep, null draws and seed, the range level, and the sparsity-only mode."""

    rank: int = 64
    alpha: float = 0.5
    eta: float = 1e-3
    tol: float = 1e-5
    include: str | None = None
    exclude: str | None = None
    chunk: int = 1 << 22
    sweep: tuple[int, ...] = SWEEP
    draws: int = 200
    seed: int = 0
    level: float = 0.95
    sparsity_only: bool = False

    def __post_init__(self):
        if int(self.rank) != self.rank or self.rank < 1:
            raise BadInput(f"Option --rank must be a positive integer, got {self.rank}.")
        if not 0.0 < self.alpha < 1.0:
            raise BadInput(f"Option --alpha must lie in the open interval (0, 1), got {self.alpha}.")
        if not 0.0 < self.eta < 1.0:
            raise BadInput(f"Option eta must lie in the open interval (0, 1), got {self.eta}.")
        if not self.tol > 0:
            raise BadInput(f"Option tol must be positive, got {self.tol}.")
        if self.chunk < 8:
            raise BadInput(f"Option --chunk must be at least 8 elements, got {self.chunk}.")
        if not self.sweep or any(int(k) != k or k < 1 for k in self.sweep):
            raise BadInput(f"Option --sweep must list positive integers, got {self.sweep}.")
        if int(self.draws) != self.draws or self.draws < 20:
            raise BadInput(f"Option --draws must be an integer of at least 20, got {self.draws}.")
        if not 0.5 <= self.level < 1.0:
            raise BadInput(f"Option --level must lie in [0.5, 1), got {self.level}.")
        for flag, rx in (("--include", self.include), ("--exclude", self.exclude)):
            if rx is not None:
                try:
                    re.compile(rx)
                except re.error as e:
                    raise BadInput(f"Option {flag} is not a valid regular expression ({e}).") from None

    def selects(self, name: str) -> bool:
        """True when ``name`` passes --include and --exclude (``re.search``)."""
        if self.include is not None and not re.search(self.include, name):
            return False
        return not (self.exclude is not None and re.search(self.exclude, name))

    @property
    def top(self) -> int:
        """K: the most base singular vectors any metric needs (rank and the largest sweep k)."""
        return max(int(self.rank), *map(int, self.sweep))
