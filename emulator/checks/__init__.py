"""Invariants and detectors: use-after-free (KASAN-like), lock rules, stalls."""
