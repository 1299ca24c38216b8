"""`python -m verify theory`: every bound of theory/ on many random and structured instances. One module of
instance generators per gate (``precision``, ``kl``, ``spectral``, ``curvature``), each returning ``row.BoundRow``s;
``command`` collects, prints and exits non-zero when a proven bound is violated."""
