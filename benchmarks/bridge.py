"""Which gap-bridging method keeps the features closest to the clean ones (DESIGN §7).

    python benchmarks/bridge.py [--quick] [--json] [--loss 0.05 0.2]
    python benchmarks/bridge.py --attribution [--quick] [--json] [--loss 0.05]

Frames are dropped at random (each stream's own frame size, seeded) from resynthesised nights of
*validation* subjects (never the test split): an ANNE night (Walch) and a PSG night (Sleep-EDF).
Each stream's chain is then run with its descriptor's bridge step set to ``none`` (no bridge),
``linear`` or ``pattern`` (the same ``max_gap``), and compared with the clean night's features:

- ANNE: per stream, the RMSE of the 1-s features in units of the bundled model's feature
  standard deviations, over the seconds that are finite in both, and the share of seconds the
  stream loses (NaN features); only seconds that touch a lost frame count;
- PSG: per channel, the RMSE of each epoch's log band powers (0.5-4, 4-8, 8-12, 12-16, 16-30 Hz)
  over epochs with lost samples, and how many epochs ULW-SleepNet (numpy reference) stages as it
  stages the clean night.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402
from machine import machine_info  # noqa: E402  (pins threads before numpy loads)

from edge.devices import load_device  # noqa: E402
from edge.features import reference_epoch_features, reference_frame_features  # noqa: E402
from edge.ops.steps import Step  # noqa: E402
from firmware_sim.faults import drop_frames  # noqa: E402

METHODS = ("none", "linear", "pattern")
ANNE_SUBJECT, PSG_NIGHT = "1818471", "SC4081"  # validation split (training/splits)
VALIDATION_SUBJECTS = ("1818471", "5498603", "6220552")
BANDS = ((0.5, 4), (4, 8), (8, 12), (12, 16), (16, 30))


def with_method(steps: tuple[Step, ...], method: str) -> tuple[Step, ...]:
    """The chain with its bridge step set to ``method`` (``none``: max_gap 0)."""
    if not steps or steps[0].op != "bridge":
        return steps
    params = dict(steps[0].params)
    if method == "none":
        params["max_gap"] = 0.0
    else:
        params["method"] = method
    return (dataclasses.replace(steps[0], params=params), *steps[1:])


def anne(hours: float, losses: list[float], seed: int) -> list[dict]:
    from edge.cli import MODELS_DIR
    from edge.models.manifest import Manifest
    from firmware_sim.resynth import walch_night

    profile = load_device("anne")
    spec = profile.input("mamba")
    night = walch_night(ANNE_SUBJECT, seed, max_epochs=int(hours * 120))
    rec = night.recording
    norm = Manifest.load(MODELS_DIR / "mamba_anne" / "mamba_anne.json").data["normalisation"]
    std = np.asarray(norm["std"])
    clean = reference_frame_features(spec, rec.signals, rec.times)
    cols = spec.stream_columns()
    rows = []
    for loss in losses:
        signals, lost = drop_frames(rec.signals, profile, loss, np.random.default_rng(seed))
        for method in METHODS:
            feats = tuple(
                dataclasses.replace(f, steps=with_method(f.steps, method)) for f in spec.features
            )
            got = reference_frame_features(
                dataclasses.replace(spec, features=feats), signals, rec.times
            )
            n = min(got.shape[-1], clean.shape[-1])
            for stream, gone in lost.items():
                rate = profile.streams[stream].rate_hz
                per_s = int(rate)
                touched = gone[: n * per_s].reshape(n, per_s).any(axis=1)
                c = np.asarray(cols[stream])
                a, b = got[c, :n][:, touched], clean[c, :n][:, touched]
                finite = np.isfinite(a).all(axis=0)
                err = (a[:, finite] - b[:, finite]) / std[c, None]
                rows.append(
                    {
                        "dataset": "anne",
                        "stream": stream,
                        "loss": loss,
                        "method": method,
                        "seconds_touched": int(touched.sum()),
                        "seconds_lost": float(1 - finite.mean()) if touched.any() else 0.0,
                        "rmse_z": float(np.sqrt(np.mean(err**2))) if err.size else 0.0,
                    }
                )
    return rows


def attribution(subjects: list[str], hours: float | None, loss: float, seed: int) -> list[dict]:
    """Kappa of the bundled ANNE model with the loss confined to one stream at a time."""
    from sklearn.metrics import cohen_kappa_score

    from edge.cli import MODELS_DIR
    from edge.models.mamba_numpy import NumpyMamba
    from edge.models.manifest import Manifest
    from firmware_sim.resynth import walch_night

    folder = MODELS_DIR / "mamba_anne"
    norm = Manifest.load(folder / "mamba_anne.json").data["normalisation"]
    mean, std = np.asarray(norm["mean"]), np.asarray(norm["std"])
    model = NumpyMamba.load(folder / "mamba_anne_weights.npz")
    profile = load_device("anne")
    spec = profile.input("mamba")
    cols = spec.stream_columns()

    def stages(feats: np.ndarray) -> np.ndarray:
        z = (feats.T - mean) / std
        logits, _, _ = model.sequence(np.where(np.isfinite(z), z, 0.0), *model.initial_state(1))
        n = len(logits) // 30
        return logits[: n * 30].reshape(n, 30, -1).mean(axis=1).argmax(axis=1)

    def with_acc(method: str) -> np.ndarray:
        feats = tuple(
            dataclasses.replace(f, steps=with_method(f.steps, method))
            for f in spec.features
            if f.stream.name == "acc"
        )
        return reference_frame_features(dataclasses.replace(spec, features=feats), signals)

    pooled: dict[str, tuple[list, list, list]] = {}
    for subject in subjects:
        night = walch_night(subject, seed, max_epochs=int(hours * 120) if hours else None)
        rec, labels = night.recording, night.stages
        clean = reference_frame_features(spec, rec.signals, rec.times)
        signals, _ = drop_frames(rec.signals, profile, loss, np.random.default_rng(seed))
        lossy = reference_frame_features(spec, signals, rec.times)
        n = min(clean.shape[-1], lossy.shape[-1])
        clean, lossy = clean[:, :n], lossy[:, :n]
        variants = {"clean": clean, "every stream lossy (linear)": lossy}
        for stream in ("ecg", "ppg", "acc"):
            mixed = clean.copy()
            mixed[cols[stream]] = lossy[cols[stream]]
            variants[f"only {stream} lossy (linear)"] = mixed
        for method in ("pattern", "none"):
            mixed = clean.copy()
            mixed[cols["acc"]] = with_acc(method)[:, :n]
            variants[f"only acc lossy ({method})"] = mixed
        reference = stages(clean)
        for name, feats in variants.items():
            got = stages(feats)
            m = min(len(got), len(labels))
            keep = labels[:m] >= 0
            pooled.setdefault(name, ([], [], []))
            pooled[name][0].append(labels[:m][keep])
            pooled[name][1].append(got[:m][keep])
            pooled[name][2].append(reference[:m][keep])
    rows = []
    for name, (truth, got, ref) in pooled.items():
        y, p, r = np.concatenate(truth), np.concatenate(got), np.concatenate(ref)
        rows.append(
            {
                "dataset": "anne",
                "subjects": subjects,
                "loss": loss,
                "condition": name,
                "epochs": int(y.size),
                "kappa": float(cohen_kappa_score(y, p)),
                "agreement_with_clean": float(np.mean(p == r)),
            }
        )
    return rows


def log_band_powers(epochs: np.ndarray, fs: float = 100.0) -> np.ndarray:
    """(E, C, L) → (E, C, bands) log power (Welch-free: one periodogram per epoch)."""
    spec = np.abs(np.fft.rfft(epochs, axis=-1)) ** 2
    f = np.fft.rfftfreq(epochs.shape[-1], 1 / fs)
    return np.stack(
        [np.log(spec[..., (f >= a) & (f < b)].mean(axis=-1) + 1e-12) for a, b in BANDS], axis=-1
    )


def psg(hours: float, losses: list[float], seed: int) -> list[dict]:
    from edge.cli import MODELS_DIR
    from edge.models import load_epoch_model
    from edge.ops.gaps import interpolate_gaps
    from firmware_sim.resynth import sleep_edf_night

    profile = load_device("psg")
    spec = profile.input("ulw_sleepnet")
    night = sleep_edf_night(PSG_NIGHT, seed, max_epochs=int(hours * 120))
    rec = night.recording
    model = load_epoch_model(MODELS_DIR / "ulw_sleepnet" / "ulw_sleepnet.json", "numpy", "fp32")
    clean = reference_epoch_features(spec, rec.signals)
    clean_stage = model.predict(clean.astype(np.float32)).argmax(axis=1)
    clean_bp = log_band_powers(clean[:, :3])
    rows = []
    for loss in losses:
        signals, lost = drop_frames(rec.signals, profile, loss, np.random.default_rng(seed))
        for method in METHODS:
            chans = tuple(
                dataclasses.replace(c, steps=with_method(c.steps, method)) for c in spec.channels
            )
            got = reference_epoch_features(dataclasses.replace(spec, channels=chans), signals)
            missing = np.isnan(got).mean(axis=-1)  # (E, C)
            # as the epoch stager does: linear inside the epoch for what is left
            stage = model.predict(interpolate_gaps(got, np.float32)).argmax(axis=1)
            bp = log_band_powers(interpolate_gaps(got[:, :3]))
            for c, stream in enumerate(("eeg_fpz_cz", "eeg_pz_oz", "eog")):
                hit = lost[stream][: got.shape[0] * 3000].reshape(-1, 3000).any(axis=1)
                err = bp[hit, c] - clean_bp[hit, c]
                rows.append(
                    {
                        "dataset": "psg",
                        "stream": stream,
                        "loss": loss,
                        "method": method,
                        "epochs_touched": int(hit.sum()),
                        "missing_after": float(missing[:, c].mean()),
                        "rmse_log_band_power": float(np.sqrt(np.mean(err**2))),
                        "stage_agreement_with_clean": float((stage == clean_stage).mean()),
                    }
                )
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="CI smoke run: 10 minutes of each")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--hours", type=float, default=2.0)
    ap.add_argument("--loss", type=float, nargs="+", default=[0.05, 0.2])
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument(
        "--attribution",
        action="store_true",
        help="kappa of the ANNE model with the loss in one stream at a time (whole "
        "validation nights; --quick: one subject's first hour)",
    )
    args = ap.parse_args(argv)
    if args.attribution:
        subjects = [ANNE_SUBJECT] if args.quick else list(VALIDATION_SUBJECTS)
        rows = attribution(subjects, 1.0 if args.quick else None, args.loss[0], args.seed)
        if args.json:
            print(json.dumps({"machine": machine_info(), "rows": rows}, indent=1))
        else:
            for r in rows:
                print(f"{r['condition']:32} kappa {r['kappa']:.3f} ({r['epochs']} epochs)")
        return 0
    hours = 1 / 6 if args.quick else args.hours
    rows = anne(hours, args.loss, args.seed) + psg(hours, args.loss, args.seed)
    doc = {"machine": machine_info(), "hours": hours, "rows": rows}
    if args.json:
        print(json.dumps(doc, indent=1))
        return 0
    for r in rows:
        metric = (
            f"rmse {r['rmse_z']:.3f} z, seconds lost {100 * r['seconds_lost']:.1f} %"
            if r["dataset"] == "anne"
            else f"band-power rmse {r['rmse_log_band_power']:.3f}, missing after "
            f"{100 * r['missing_after']:.1f} %, stages as clean "
            f"{100 * r['stage_agreement_with_clean']:.1f} %"
        )
        print(f"{r['dataset']:4} {r['stream']:10} loss {r['loss']:.2f} {r['method']:7} {metric}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
