"""Every figure of the claims, drawn from numbers (never from runs): ``common`` (saving, paired bars, lines over
seeds), ``gates`` (Gate I-III and the control), ``regime`` (the regime map), ``cases`` (C3, C4, C12, C14) and
``adapters`` (C15, C16). A figure function returns an unsaved matplotlib figure; ``verify.finish`` saves it.

Importing this package selects a non-interactive matplotlib backend unless MPLBACKEND names one.
"""

import os

import matplotlib

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))
