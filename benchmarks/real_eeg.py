"""Real EEG: the bundled ULW-SleepNet on every labelled DREAMS excerpt, beside YASA and a ceiling.

``python benchmarks/real_eeg.py [--data DIR] [--json] [--quick] [--backend B --precision P]``

DIR has the layout of ``../shared/data/dreams_spindles``: ``excerptN.npz`` with the raw central
EEG in µV at its own rate (``eeg``, ``fs``, ``channel``) and the expert scoring per 30 s
(``stage_30s``: the class of at least 4 of the 6 five-second R&K values, else -1, which is not
scored). Each excerpt is staged three ways on the same signal and the same labelled epochs:

- **ours**: the excerpt goes through ``edge-run --source replay --device psg`` (the replay path:
  frames, session, streaming operator chains, epoching, the model runtime). The channel is
  brought to the device's 100 Hz by edge's streaming ``Resampler`` (pushed one second at a
  time) and given to both EEG inputs; EOG and EMG inputs are flat zero (``to_replay_npz`` is the
  one place to switch to the recordings library's channel mapping, resampling and reduced input
  once ``edge`` has them).
- **YASA** 0.8.1 (``yasa.SleepStaging``, its pretrained LightGBM, EEG only, the channel at its
  own rate, 50 Hz brought to 100 Hz since YASA refuses below 80 Hz): the published peer.
  Installed for the benchmark only (``pip install yasa``); the row says so when it is missing.
  YASA loads the classifier shipped inside its own package with joblib (a pickle): the
  benchmark never hands it a file of ours or a user's.
- **excerpt3.edf** (``original/``, the one whole PSG excerpt, read with edfio): the same scoring
  staged with its EOG too (C3-A1 + EOG1-A1 at 50 Hz) by ours and YASA, reported apart
  (``full_psg``), not pooled (excerpt 3 is already in the pool).
- **ceiling**: gradient boosting on per-epoch EEG band powers (log absolute and relative, and
  the same z-scored within the recording), leave-one-recording-out: what a plain classifier
  gets from this very channel's spectrum with labels from the other recordings.

``--json`` prints ``{model, recordings, epochs, accuracy, kappa, peers: {yasa: {...}},
ceiling: {...}}`` (pooled figures at the top level, per recording under ``recordings``).
``--quick``: excerpts 1 and 3 only (100 and 50 Hz), for the smoke test.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import benchmarks.machine  # noqa: E402, F401, I001  (pins BLAS threads before numpy loads)
import numpy as np  # noqa: E402

from benchmarks.machine import machine_info  # noqa: E402
from edge.ops.resample import Resampler  # noqa: E402
from firmware_sim.resynth.data import data_root  # noqa: E402
from training.metrics import stage_metrics  # noqa: E402

RATE = 100  # the psg device's EEG rate, Hz
EPOCH_S = 30
QUICK = ("excerpt1", "excerpt3")
YASA_CODES = {"W": 0, "WAKE": 0, "N1": 1, "N2": 2, "N3": 3, "R": 4, "REM": 4}
# ceiling features: Welch log band powers (µV²) in these bands
BANDS = ((0.5, 2), (2, 4), (4, 6), (6, 8), (8, 10), (10, 12), (12, 14), (14, 16), (16, 20),
         (20, 30))  # fmt: skip


@dataclass
class Excerpt:
    name: str
    eeg: np.ndarray  # µV at fs
    fs: float
    channel: str
    stages: np.ndarray  # per 30 s from the start, -1 = not scored
    eog: np.ndarray | None = None  # µV at fs, where the recording has one
    eog_channel: str = ""

    @property
    def epochs(self) -> int:
        return int(len(self.eeg) // int(round(self.fs * EPOCH_S)))


def load_excerpts(data: Path, names: tuple[str, ...] | None = None) -> list[Excerpt]:
    """Every ``excerptN.npz`` under ``data`` (or those named), in excerpt order."""
    paths = sorted(data.glob("excerpt*.npz"), key=lambda p: int(p.stem.removeprefix("excerpt")))
    out = []
    for p in paths:
        if names is not None and p.stem not in names:
            continue
        with np.load(p, allow_pickle=False) as z:
            out.append(
                Excerpt(
                    p.stem,
                    z["eeg"].astype(np.float64),
                    float(z["fs"]),
                    str(z["channel"]),
                    z["stage_30s"].astype(np.int64),
                )
            )
    if not out:
        raise SystemExit(f"real_eeg: no excerptN.npz under {data}")
    return out


def load_full_psg(data: Path) -> list[Excerpt]:
    """``original/excerpt3.edf`` (the one whole 20-signal PSG excerpt), read with edfio: C3-A1
    and EOG1-A1 at 50 Hz, with excerpt 3's scoring (its hypnogram signal equals the 5-s
    hypnogram the .npz labels come from)."""
    import edfio

    path = data / "original" / "excerpt3.edf"
    if not path.exists():
        return []
    signals = {s.label.strip(): s for s in edfio.read_edf(path).signals}
    eeg, eog = signals["C3-A1"], signals["EOG1-A1"]
    with np.load(data / "excerpt3.npz", allow_pickle=False) as z:
        stages = z["stage_30s"].astype(np.int64)
    return [
        Excerpt(
            "excerpt3.edf",
            eeg.data.astype(np.float64),
            float(eeg.sampling_frequency),
            "C3-A1",
            stages,
            eog.data.astype(np.float64),
            "EOG1-A1",
        )
    ]


def to_device_rate(x: np.ndarray, fs: float, rate: float = RATE) -> np.ndarray:
    """``x`` at ``rate`` through edge's streaming Resampler, one second pushed at a time."""
    r = Resampler(fs, rate)
    step = max(1, int(round(fs)))
    parts = [r.push(x[i : i + step]) for i in range(0, len(x), step)]
    parts.append(r.flush())
    y = np.concatenate(parts)
    return y[: int(round(len(x) * rate / fs))]


def to_replay_npz(ex: Excerpt, path: Path) -> Path:
    """A replay file for ``--device psg``: the channel at 100 Hz on both EEG streams, the EOG at
    100 Hz where the recording has one, else flat, and the EMG flat (the psg model takes four
    inputs; the excerpts hold one EEG channel, excerpt3.edf also an EOG; its raw chin EMG is not
    the 1-Hz envelope the model was trained on)."""
    n = ex.epochs * EPOCH_S
    eeg = to_device_rate(ex.eeg, ex.fs)[: n * RATE]
    eog = np.zeros(n * RATE) if ex.eog is None else to_device_rate(ex.eog, ex.fs)[: n * RATE]
    np.savez(
        path,
        eeg_fpz_cz=eeg[None],
        eeg_pz_oz=eeg[None],
        eog=eog[None],
        emg=np.zeros((1, n)),
    )
    return path


def stage_ours(ex: Excerpt, work: Path, backend: str, precision: str) -> np.ndarray:
    """Stage codes per epoch from ``edge-run --source replay`` (-1: unscored)."""
    replay = to_replay_npz(ex, work / f"{ex.name}.npz")
    out = work / ex.name
    cmd = [sys.executable, "-m", "edge.cli", "--source", "replay", "--file", str(replay),
           "--device", "psg", "--out", str(out), "--plain", "--backend", backend,
           "--precision", precision]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise SystemExit(f"real_eeg: edge-run failed on {ex.name}: {r.stderr.strip()}")
    stages = np.full(ex.epochs, -1, np.int64)
    for line in (out / "epochs.jsonl").read_text(encoding="utf-8").splitlines():
        e = json.loads(line)
        if e["index"] < ex.epochs:
            stages[e["index"]] = e["stage"]
    return stages


def yasa_version() -> str | None:
    try:
        import yasa
    except ImportError:
        return None
    return yasa.__version__


def stage_yasa(ex: Excerpt) -> np.ndarray:
    """YASA's pretrained staging on the same channel at its own rate (EEG only; YASA refuses
    rates below 80 Hz, so a 50-Hz channel gets the same 100-Hz resampling as ours)."""
    import mne
    import yasa

    names, kinds, rows = [ex.channel], ["eeg"], [ex.eeg]
    if ex.eog is not None:
        names, kinds, rows = [*names, ex.eog_channel], [*kinds, "eog"], [*rows, ex.eog]
    fs = ex.fs
    if fs < 80:
        rows, fs = [to_device_rate(r, ex.fs) for r in rows], RATE
    info = mne.create_info(names, fs, kinds, verbose=False)
    raw = mne.io.RawArray(np.stack(rows) * 1e-6, info, verbose=False)  # YASA wants volts
    eog_name = ex.eog_channel if ex.eog is not None else None
    hyp = yasa.SleepStaging(raw, eeg_name=ex.channel, eog_name=eog_name).predict()
    labels = np.asarray(hyp.hypno if hasattr(hyp, "hypno") else hyp, dtype=str)
    stages = np.array([YASA_CODES[v.upper()] for v in labels], np.int64)
    out = np.full(ex.epochs, -1, np.int64)
    out[: min(len(stages), ex.epochs)] = stages[: ex.epochs]
    return out


def band_features(ex: Excerpt) -> np.ndarray:
    """Per epoch: log band powers, relative band powers, and both z-scored in the recording."""
    from scipy.signal import welch

    x = to_device_rate(ex.eeg, ex.fs)[: ex.epochs * EPOCH_S * RATE]
    f, p = welch(x.reshape(ex.epochs, -1), fs=RATE, nperseg=400, noverlap=200, axis=-1)
    power = np.stack([p[:, (f >= lo) & (f < hi)].sum(axis=1) for lo, hi in BANDS], axis=1)
    power = np.maximum(power, 1e-12)
    feats = np.concatenate([np.log10(power), power / power.sum(axis=1, keepdims=True)], axis=1)
    z = (feats - feats.mean(axis=0)) / (feats.std(axis=0) + 1e-9)
    return np.concatenate([feats, z], axis=1)


def stage_ceiling(excerpts: list[Excerpt]) -> dict[str, np.ndarray]:
    """Leave-one-recording-out gradient boosting on ``band_features``."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    feats = {ex.name: band_features(ex) for ex in excerpts}
    out = {}
    for ex in excerpts:
        train = [e for e in excerpts if e.name != ex.name]
        if not train:
            out[ex.name] = np.full(ex.epochs, -1, np.int64)
            continue
        x = np.concatenate([feats[e.name][e.stages[: e.epochs] >= 0] for e in train])
        y = np.concatenate([e.stages[: e.epochs][e.stages[: e.epochs] >= 0] for e in train])
        clf = HistGradientBoostingClassifier(max_iter=200, random_state=0).fit(x, y)
        out[ex.name] = clf.predict(feats[ex.name]).astype(np.int64)
    return out


def _scores(y: np.ndarray, p: np.ndarray) -> dict:
    """Metrics on the labelled epochs; an unscored prediction counts as wrong."""
    keep = y >= 0
    m = stage_metrics(y[keep], p[keep])
    keys = ("accuracy", "balanced_accuracy", "macro_f1", "kappa", "n_epochs", "confusion")
    out = {k: m[k] for k in keys}
    out["unscored"] = int(np.sum(p[keep] < 0))
    return out


def run(data: Path, quick: bool, backend: str, precision: str) -> dict:
    excerpts = load_excerpts(data, QUICK if quick else None)
    full = load_full_psg(data)
    version = yasa_version()
    ours, peer = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for ex in [*excerpts, *full]:
            ours[ex.name] = stage_ours(ex, Path(tmp), backend, precision)
            if version is not None:
                peer[ex.name] = stage_yasa(ex)
    ceiling = stage_ceiling(excerpts)
    y_all = np.concatenate([ex.stages[: ex.epochs] for ex in excerpts])

    def pooled(pred: dict) -> dict:
        return _scores(y_all, np.concatenate([pred[ex.name] for ex in excerpts]))

    recordings = []
    for ex in excerpts:
        y = ex.stages[: ex.epochs]
        row = {
            "name": ex.name,
            "channel": ex.channel,
            "fs_hz": ex.fs,
            "epochs": int(np.sum(y >= 0)),
        }
        for label, pred in (("model", ours), ("yasa", peer), ("ceiling", ceiling)):
            if ex.name in pred:
                s = _scores(y, pred[ex.name])
                row[label] = {"accuracy": s["accuracy"], "kappa": s["kappa"]}
        recordings.append(row)
    full_rows = []
    for ex in full:
        y = ex.stages[: ex.epochs]
        row = {"name": ex.name, "channels": [ex.channel, ex.eog_channel], "fs_hz": ex.fs}
        row["epochs"] = int(np.sum(y >= 0))
        for label, pred in (("model", ours), ("yasa", peer)):
            if ex.name in pred:
                s = _scores(y, pred[ex.name])
                row[label] = {"accuracy": s["accuracy"], "kappa": s["kappa"]}
        full_rows.append(row)
    result = {"model": f"ulw_sleepnet ({backend} {precision})"} | pooled(ours)
    result = {
        "model": result["model"],
        "recordings": recordings,
        "epochs": result["n_epochs"],
        **{k: v for k, v in result.items() if k not in ("model", "n_epochs")},
        "input": "the excerpt's one central EEG channel, resampled to 100 Hz in the stream, on "
        "both EEG inputs; EOG and EMG flat",
        "full_psg": full_rows,  # excerpt3.edf with its EOG: not pooled (excerpt 3 is already)
        "peers": {
            "yasa": (
                pooled(peer) | {"version": version, "input": "the same channel at its own rate"}
                if version is not None
                else {"skipped": "yasa is not installed (pip install yasa)"}
            )
        },
        "ceiling": pooled(ceiling)
        | {"method": "gradient boosting on per-epoch band powers, leave-one-recording-out"},
        "data": f"DREAMS spindles excerpts under {data} (30-s labels: majority of >= 4 of 6 "
        "five-second R&K scores; others not scored)",
        "command": "python benchmarks/real_eeg.py" + (" --quick" if quick else ""),
        "machine": machine_info(),
        "date": datetime.date.today().isoformat(),
    }
    return result


def _line(label: str, r: dict) -> str:
    return (
        f"{label:18s} accuracy {r['accuracy']:.3f}  balanced {r['balanced_accuracy']:.3f}  "
        f"macro-F1 {r['macro_f1']:.3f}  kappa {r['kappa']:.3f}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=data_root() / "dreams_spindles")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--quick", action="store_true", help="excerpts 1 and 3 only (smoke run)")
    ap.add_argument("--backend", default="onnxruntime")
    ap.add_argument("--precision", default="fp32")
    args = ap.parse_args(argv)
    # YASA's bundled classifier was pickled by an older scikit-learn, and a recording with
    # few classes makes sklearn warn per metric: neither changes a figure
    warnings.filterwarnings("ignore", module="sklearn")
    r = run(args.data, args.quick, args.backend, args.precision)
    if args.json:
        print(json.dumps(r))
        return 0
    print(f"{len(r['recordings'])} recordings, {r['epochs']} labelled epochs ({r['data']})")
    print(_line(r["model"], r))
    yasa = r["peers"]["yasa"]
    print(_line(f"YASA {yasa['version']}", yasa) if "kappa" in yasa else f"YASA: {yasa['skipped']}")
    print(_line("ceiling (LORO GB)", r["ceiling"]))
    for row in r["recordings"]:
        cells = "  ".join(
            f"{k} {row[k]['accuracy']:.2f}/{row[k]['kappa']:.2f}"
            for k in ("model", "yasa", "ceiling")
            if k in row
        )
        where = f"{row['name']:9s} {row['channel']} {row['fs_hz']:5.0f} Hz"
        print(f"  {where} {row['epochs']:3d} ep  {cells}")
    for row in r["full_psg"]:
        cells = "  ".join(
            f"{k} {row[k]['accuracy']:.2f}/{row[k]['kappa']:.2f}"
            for k in ("model", "yasa")
            if k in row
        )
        print(f"  {row['name']} {'+'.join(row['channels'])} {row['epochs']:3d} ep  {cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
