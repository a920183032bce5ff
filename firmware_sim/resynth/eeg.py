"""EEG/EOG with each epoch's real band powers, by random-phase spectral synthesis.

For every 30-s epoch the one-sided PSD is a smooth curve through the record's five band levels
(delta 0.5-4, theta 4-8, alpha 8-12, sigma 12-16, beta 16-30 Hz), rolling off as 1/f² above
30 Hz and zero below 0.5 Hz (the source was band-passed). Complex Gaussian coefficients give
natural Rayleigh statistics; the levels are then corrected a few times so that the band powers
measured with the Sleep-EDF feature settings match the record's. Neighbouring epochs overlap by
``fade_s`` seconds on each side with power-complementary (sin/cos) fades, so the signal has no
steps at epoch boundaries. Amplitude: the source features are of per-night z-scored signals, so
a fixed per-channel µV scale turns them into plausible voltages (scale² multiplies every power).
"""

from __future__ import annotations

import numpy as np

BANDS = ((0.5, 4.0), (4.0, 8.0), (8.0, 12.0), (12.0, 16.0), (16.0, 30.0))


CENTRES = np.array([np.sqrt(lo * hi) for lo, hi in BANDS])  # geometric band centres


def _psd(freqs: np.ndarray, log_powers: np.ndarray) -> np.ndarray:
    """Smooth PSD (epochs, freqs): log PSD interpolated linearly in log frequency between the
    band centres (levels = band power / bandwidth), flat below the first centre down to 0.5 Hz,
    falling as 1/f² above 30 Hz, zero below 0.5 Hz."""
    widths = np.array([hi - lo for lo, hi in BANDS])
    levels = log_powers.astype(np.float64) - np.log10(widths)  # log10 PSD at the centres
    lf = np.log10(np.clip(freqs, 0.5, 30.0))
    out = np.empty((log_powers.shape[0], freqs.size))
    for i in range(log_powers.shape[0]):
        out[i] = np.interp(lf, np.log10(CENTRES), levels[i])
    psd = 10.0**out
    psd[:, freqs < 0.5] = 0.0
    above = freqs > 30.0
    psd[:, above] *= (30.0 / freqs[above]) ** 2
    return psd


def synth_channel(
    log_powers: np.ndarray,
    fs: float = 100.0,
    epoch_s: float = 30.0,
    fade_s: float = 1.0,
    scale: float = 1.0,
    rng: np.random.Generator | None = None,
    iterations: int = 4,
) -> np.ndarray:
    """One channel, (epochs × epoch_s × fs) samples, whose measured band powers (``band_powers``)
    match ``log_powers`` (epochs, 5): the random coefficients are drawn once, then the target
    levels are corrected ``iterations`` times by the measured error (leakage and chance)."""
    rng = rng or np.random.default_rng(0)
    n_ep = log_powers.shape[0]
    ep_len, fade = int(epoch_s * fs), int(fade_s * fs)
    seg = ep_len + 2 * fade
    freqs = np.fft.rfftfreq(seg, 1 / fs)
    coef = (
        rng.standard_normal((n_ep, freqs.size)) + 1j * rng.standard_normal((n_ep, freqs.size))
    ) / 2.0
    goal = np.asarray(log_powers, dtype=np.float64)
    target = goal.copy()
    for it in range(iterations + 1):
        x = _assemble(coef, _psd(freqs, target), fs, seg, ep_len, fade)
        if it == iterations:
            break
        target += np.clip(goal - band_powers(x, fs, epoch_s), -1.0, 1.0)
    return scale * x


def _assemble(coef, psd, fs, seg, ep_len, fade) -> np.ndarray:
    n_ep = coef.shape[0]
    segments = np.fft.irfft(coef * np.sqrt(psd * fs * seg), n=seg, axis=1)  # (epochs, seg)
    t = 0.5 * np.pi * (np.arange(2 * fade) + 0.5) / (2 * fade)
    segments[1:, : 2 * fade] *= np.sin(t)  # sin² + cos² = 1 across each overlap
    segments[:-1, seg - 2 * fade :] *= np.cos(t)
    out = np.zeros(n_ep * ep_len + 2 * fade)
    for k in range(n_ep):  # one slice add per epoch (~1,000 a night)
        out[k * ep_len : k * ep_len + seg] += segments[k]
    return out[fade : fade + n_ep * ep_len]


def band_powers(x: np.ndarray, fs: float = 100.0, epoch_s: float = 30.0) -> np.ndarray:
    """log10 Welch band powers per epoch, with the Sleep-EDF feature settings (Hamming,
    nperseg = nfft = 400, 50 % overlap, median average) → (epochs, 5)."""
    from scipy.signal import welch

    ep_len = int(epoch_s * fs)
    n_ep = x.size // ep_len
    f, p = welch(
        x[: n_ep * ep_len].reshape(n_ep, ep_len),
        fs=fs,
        window="hamming",
        nperseg=400,
        noverlap=200,
        nfft=400,
        average="median",
        axis=-1,
    )
    df = f[1] - f[0]
    return np.stack(
        [np.log10(p[:, (f >= lo) & (f < hi)].sum(axis=1) * df) for lo, hi in BANDS], axis=1
    )
