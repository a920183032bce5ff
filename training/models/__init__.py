"""Torch models: ULW-SleepNet (per-epoch PSG CNN)."""
