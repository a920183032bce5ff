"""Generic physiology for a virtual ANNE One: signals with realistic rates, units and shapes.

Nothing here depends on a sleep stage (there is no label input at all): heart rate, breathing
and movement follow slow random walks. Resynthesis from real per-epoch records (DESIGN §3) is
built on top of this in a later issue.
"""

from __future__ import annotations

import numpy as np

from edge.devices import DeviceProfile


def _slow_walk(
    rng: np.random.Generator, n_s: int, mean: float, sd: float, tau_s: float
) -> np.ndarray:
    """An Ornstein-Uhlenbeck walk sampled at 1 Hz (mean-reverting over ``tau_s`` seconds)."""
    a = np.exp(-1.0 / tau_s)
    noise = rng.standard_normal(n_s) * sd * np.sqrt(1 - a * a)
    from scipy.signal import lfilter

    return mean + lfilter([1.0], [1.0, -a], noise)


def _at_rate(per_second: np.ndarray, rate: float, n: int) -> np.ndarray:
    t = np.arange(n) / rate
    return np.interp(t, np.arange(per_second.size), per_second)


def anne_session(
    profile: DeviceProfile, duration_s: float, seed: int = 0
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Whole-session arrays {stream: (axes, n)} and timestamps {stream: (n,)} for slow streams."""
    rng = np.random.default_rng(seed)
    n_s = int(np.ceil(duration_s)) + 2
    hr = np.clip(_slow_walk(rng, n_s, 60.0, 6.0, 300.0), 40, 110)  # beats per minute
    br = np.clip(_slow_walk(rng, n_s, 14.0, 2.0, 300.0), 8, 24)  # breaths per minute
    move = np.abs(_slow_walk(rng, n_s, 0.0, 0.02, 60.0))
    out: dict[str, np.ndarray] = {}
    times: dict[str, np.ndarray] = {}
    for name, spec in profile.streams.items():
        n = int(duration_s * spec.rate_hz)
        t = np.arange(n) / spec.rate_hz
        beat_phase = 2 * np.pi * np.cumsum(_at_rate(hr, spec.rate_hz, n) / 60.0) / spec.rate_hz
        resp = np.sin(2 * np.pi * np.cumsum(_at_rate(br, spec.rate_hz, n) / 60.0) / spec.rate_hz)
        if name == "ecg":
            qrs = np.exp((np.cos(beat_phase) - 1) * 60.0)  # narrow R peaks
            twave = 0.25 * np.exp((np.cos(beat_phase - 1.2) - 1) * 6.0)
            sig = (qrs + twave + 0.05 * resp + 0.02 * rng.standard_normal(n))[None]
        elif name == "ppg":
            pulse = np.sin(beat_phase) + 0.3 * np.sin(2 * beat_phase + 0.8)
            sig = (pulse + 0.2 * resp + 0.03 * rng.standard_normal(n))[None]
        elif name == "acc":
            gravity = np.array([[0.0], [0.0], [1.0]])
            m = _at_rate(move, spec.rate_hz, n)
            sig = gravity + 0.005 * resp + m * rng.standard_normal((3, n))
        elif spec.timing == "timestamped":
            base = 34.0 if "chest" in name else 31.0
            jitter = rng.uniform(-0.05, 0.05, n)
            t = t + jitter + 0.1  # device-clock timestamps (strictly increasing), not a grid
            sig = _at_rate(_slow_walk(rng, n_s, base, 0.3, 1800.0), 1.0, n)[None]
            times[name] = t
        else:
            sig = 0.1 * rng.standard_normal((spec.n_axes, n))
        out[name] = sig
    return out, times


def psg_session(profile: DeviceProfile, duration_s: float, seed: int = 0) -> dict[str, np.ndarray]:
    """Generic PSG: 1/f-shaped EEG (~20 µV), EOG with slow drifts, a 1 Hz EMG envelope."""
    from scipy.signal import lfilter

    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for name, spec in profile.streams.items():
        n = int(duration_s * spec.rate_hz)
        white = rng.standard_normal((spec.n_axes, n))
        if name.startswith("eeg"):
            sig = 20.0 * lfilter([1.0], [1.0, -0.95], white, axis=-1) / 3.2
        elif name == "eog":
            sig = 30.0 * lfilter([1.0], [1.0, -0.995], white, axis=-1) / 10.0
        else:
            sig = np.abs(5.0 + 1.0 * white)
        out[name] = sig
    return out
