"""ANNE-rate ECG, PPG, chest ACC and temperatures from beat times and per-second activity.

What comes from the real record: when the heart beats (from a per-second heart rate, or real
beat-to-beat intervals) and how much the body moves each second. Generic, label-free physiology:
the PQRST and pulse morphology (QT following RR as Bazett), a constant-amplitude respiratory
sinus arrhythmia, chest motion from breathing, skin temperatures as slow random walks.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import butter, sosfiltfilt

# PQRST as Gaussians: (offset from R in s, width in s, amplitude in mV); T moves with sqrt(RR)
PQRST = ((-0.16, 0.025, 0.12), (-0.025, 0.010, -0.10), (0.0, 0.012, 1.0), (0.028, 0.010, -0.22))
T_WAVE = (0.28, 0.045, 0.30)
PULSE = ((0.12, 0.055, 1.0), (0.34, 0.070, 0.35))  # systolic and dicrotic waves, after PTT
PTT_S = 0.25
BREATH_HZ = 0.25  # 15 breaths a minute, generic


def beats_from_hr(hr_bpm: np.ndarray, duration_s: float, rsa_bpm: float = 2.0) -> np.ndarray:
    """Beat times (s) for a heart rate sampled at 1 Hz, with a generic respiratory sinus
    arrhythmia of ±``rsa_bpm``; phase integrated at 100 Hz, a beat at each whole cycle."""
    t = np.arange(0.0, duration_s, 0.01)
    hr = np.interp(t, np.arange(hr_bpm.size), hr_bpm) + rsa_bpm * np.sin(2 * np.pi * BREATH_HZ * t)
    phase = np.cumsum(hr / 60.0) * 0.01
    k = np.arange(1, int(phase[-1]) + 1)
    return np.interp(k, phase, t)


def _waves(t: np.ndarray, beats: np.ndarray, shapes, t_wave: bool, delay: float) -> np.ndarray:
    """Sum of the wave shapes around the previous and the next beat of every sample."""
    b = beats + delay
    idx = np.clip(np.searchsorted(b, t), 1, b.size - 1)
    prev, nxt = b[idx - 1], b[idx]
    rr = np.clip(nxt - prev, 0.3, 2.0)
    out = np.zeros_like(t)
    for ref in (prev, nxt):
        dt = t - ref
        for off, width, amp in shapes:
            out += amp * np.exp(-0.5 * ((dt - off) / width) ** 2)
        if t_wave:
            off, width, amp = T_WAVE
            out += amp * np.exp(-0.5 * ((dt - off * np.sqrt(rr)) / width) ** 2)
    return out


def ecg(beats: np.ndarray, fs: float, n: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / fs
    wander = 0.05 * np.sin(2 * np.pi * BREATH_HZ * t)
    return _waves(t, beats, PQRST, True, 0.0) + wander + 0.01 * rng.standard_normal(n)


def ppg(beats: np.ndarray, fs: float, n: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / fs
    resp = 0.15 * np.sin(2 * np.pi * BREATH_HZ * t + 0.7)
    return 1000.0 * (_waves(t, beats, PULSE, False, PTT_S) + resp) + 5 * rng.standard_normal(n)


def chest_acc(
    activity_per_s: np.ndarray,
    fs: float,
    n: int,
    rng: np.random.Generator,
    g_per_count: float = 0.01,
) -> np.ndarray:
    """Gravity (lying on the back) + breathing + movement whose RMS (g) in each second is
    ``g_per_count`` × that second's activity."""
    t = np.arange(n) / fs
    sos = butter(2, [0.5, 5.0], "bandpass", fs=fs, output="sos")
    noise = sosfiltfilt(sos, rng.standard_normal((3, n)), axis=-1)
    noise /= noise.std(axis=-1, keepdims=True)
    amp = g_per_count * np.interp(t, np.arange(activity_per_s.size) + 0.5, activity_per_s)
    acc = amp * noise / np.sqrt(3.0)
    acc[2] += 1.0
    acc[2] += 0.004 * np.sin(2 * np.pi * BREATH_HZ * t)
    return acc


def slow_walk(n: int, base: float, sd: float, tau_s: float, rng: np.random.Generator) -> np.ndarray:
    """n samples at 1 Hz of a mean-reverting (Ornstein-Uhlenbeck) walk around ``base``."""
    from scipy.signal import lfilter

    a = np.exp(-1.0 / tau_s)
    return base + lfilter([np.sqrt(1 - a * a) * sd], [1, -a], rng.standard_normal(n))


def skin_temperature(
    duration_s: float, base: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """~1 Hz timestamped samples (jittered device timing) of a slow walk around ``base``
    (±0.4 °C over ~30 min)."""
    n = int(duration_s)
    t = np.arange(n) + 0.2 + rng.uniform(-0.05, 0.05, n)
    return t, slow_walk(n, base, 0.4, 1800.0, rng)[None]


def anne_signals(
    beats: np.ndarray,
    activity_per_s: np.ndarray,
    duration_s: float,
    profile,
    rng: np.random.Generator,
) -> tuple[dict, dict]:
    """All five ANNE streams for ``duration_s`` seconds."""
    rates = {n: s.rate_hz for n, s in profile.streams.items()}
    n = {k: int(duration_s * r) for k, r in rates.items()}
    signals = {
        "ecg": ecg(beats, rates["ecg"], n["ecg"], rng)[None],
        "ppg": ppg(beats, rates["ppg"], n["ppg"], rng)[None],
        "acc": chest_acc(activity_per_s, rates["acc"], n["acc"], rng),
    }
    times = {}
    for name, base in (("temp_chest", 34.5), ("temp_finger", 32.0)):
        times[name], signals[name] = skin_temperature(duration_s, base, rng)
    return signals, times
