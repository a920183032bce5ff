"""Staging under imperfect links and missing sensors, on the held-out nights (DESIGN §7).

    python benchmarks/robustness.py [--data DIR] [--quick] [--json] [--models anne psg]
                                    [--jobs N] [--plot PNG]

Every held-out night (the test split: Walch subjects for the ANNE model, Sleep-EDF nights for
ULW-SleepNet; with ``--data DIR``, the nights under DIR that the committed splits neither
trained nor validated on, as ``training.evaluate`` picks them) is resynthesised, played by the
virtual device, framed in the open wire format, put through the simulator's seeded faults, and
staged by the same ``Session`` that ``edge-run`` runs (receiver → assembler → bridge → operators
→ model → epochs). Conditions: clean; frame loss 1, 2, 5, 10, 20, 30 %; duplicates + reordering
2 %; a 60-s disconnect every 30 min; clock drift ±200 ppm; each sensor group off all night
(leads-off frames), every group off, and (ANNE) each named device subset; every link fault at
once (loss 5 %, duplicates and reordering 2 %, disconnects, drift +200 ppm).

Figures are pooled over nights, on the epochs the night's hypnogram scores: ``kappa`` and
``balanced_accuracy`` over the epochs the engine staged, ``unscored_fraction`` of the labelled
epochs it left unscored; ``kappa_clean`` is the clean condition's kappa. ``--json`` prints one
JSON document: a list of records ``{model, dataset, condition, epochs, unscored_fraction, kappa,
balanced_accuracy, kappa_clean}``. ``--plot`` draws kappa and the unscored fraction against the
loss rate for both models.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # training/ for the splits
import numpy as np  # noqa: E402
from machine import machine_info  # noqa: E402  (pins threads before numpy loads)

LOSSES = (0.01, 0.02, 0.05, 0.10, 0.20, 0.30)
SUBSETS = {  # ANNE device subsets (training.data.anne.SENSOR_SETS): the streams kept
    "chest": ("temp_chest", "ecg", "acc"),
    "ecg": ("ecg",),
    "acc": ("acc",),
    "ppg_acc": ("ppg", "acc"),
}
DEVICE = {"anne": "anne", "psg": "psg"}
DATASET = {"anne": "walch", "psg": "sleep-edf"}


@dataclass(frozen=True)
class Condition:
    name: str
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    disconnect: tuple[float, float] = (0.0, 0.0)
    drift_ppm: float = 0.0
    off: tuple[str, ...] = field(default=())  # streams off all night


def conditions(model: str, streams: list[str], quick: bool) -> list[Condition]:
    if quick:
        return [
            Condition("clean"),
            Condition("loss 20%", loss=0.2),
            Condition(f"off {streams[-1]}", off=(streams[-1],)),
        ]
    out = [Condition("clean")]
    out += [Condition(f"loss {round(100 * p)}%", loss=p) for p in LOSSES]
    out.append(Condition("duplicate+reorder 2%", duplicate=0.02, reorder=0.02))
    out.append(Condition("disconnect 60/1800", disconnect=(60.0, 1800.0)))
    out += [Condition(f"drift {d:+d} ppm", drift_ppm=float(d)) for d in (200, -200)]
    out += [Condition(f"off {s}", off=(s,)) for s in streams]
    out.append(Condition("off all", off=tuple(streams)))
    if model == "anne":
        out += [
            Condition(f"sensors {k}", off=tuple(s for s in streams if s not in keep))
            for k, keep in SUBSETS.items()
        ]
    out.append(
        Condition(
            "all faults",
            loss=0.05,
            duplicate=0.02,
            reorder=0.02,
            disconnect=(60.0, 1800.0),
            drift_ppm=200.0,
        )
    )
    return out


def held_out(model: str, data: Path | None, quick: bool, max_nights: int | None = None):
    """The held-out nights of ``model``'s dataset (the first one with --quick, else the first
    ``max_nights`` in name order)."""
    from training.splits import load as load_split

    root = data or _default_root()
    if model == "anne":
        from training.evaluate_mamba import evaluated_subjects, walch_root

        nights = evaluated_subjects(walch_root(root), "test", None)
    else:
        split = load_split("sleep-edf")["nights"]
        trained = set(split["train"]) | set(split["val"])
        nights = sorted(
            p.stem
            for p in (root / "sleep_edf" / "bandpower_features").glob("*.npz")
            if p.stem not in trained
        )
    return nights[:1] if quick else nights[:max_nights]


def _default_root() -> Path:
    from firmware_sim.resynth.data import data_root

    return data_root()


def stage_night(
    model: str, night: str, conds: list[Condition], data: str | None, max_s, manifest=None
):
    """Per condition: (truth per epoch, staged per epoch, seconds taken) for one night. The
    night is resynthesised once, and framed once per clock drift and sensor set."""
    from edge.devices import load_device
    from firmware_sim.device import VirtualDevice
    from firmware_sim.faults import FaultPlan, apply_faults
    from firmware_sim.recordings import Recording
    from firmware_sim.resynth import sleep_edf_night, walch_night

    profile = load_device(DEVICE[model])
    root = Path(data) if data else None
    epochs = None if max_s is None else int(max_s // 30)
    if model == "anne":
        from training.evaluate_mamba import walch_root

        synth = walch_night(night, 0, walch_root(root) if root else None, epochs)
    else:
        synth = sleep_edf_night(night, 0, root, epochs)
    rec = synth.recording
    framed: dict[tuple, list] = {}  # (stream, drift, off) -> that stream's frames

    def frames_of(stream: str, drift: float, off: bool) -> list:
        key = (stream, drift, off)
        if key not in framed:
            times = {stream: rec.times[stream]} if stream in rec.times else {}
            one = Recording({stream: rec.signals[stream]}, times, "")
            windows = {stream: [(0.0, rec.duration_s + 1.0)]} if off else {}
            device = VirtualDevice.from_recording(profile, one, drift_ppm=drift, sensor_off=windows)
            framed[key] = list(device.frames())
        return framed[key]

    out = {}
    for cond in conds:
        t0 = time.perf_counter()
        sent = [f for s in rec.signals for f in frames_of(s, cond.drift_ppm, s in cond.off)]
        sent.sort(key=lambda f: (f.t_send_s, f.stream, f.seq))  # as VirtualDevice.frames
        down, every = cond.disconnect
        plan = FaultPlan(7, cond.loss, cond.duplicate, cond.reorder, 3, down, every)
        deliveries, _ = apply_faults(sent, plan)
        session = _session(profile, model, manifest)
        frames = [d.frame.data for d in deliveries]
        records = []
        for i in range(0, len(frames), 4096):
            records += session.feed_many(frames[i : i + 4096])
        records += session.finish(rec.duration_s)
        staged = np.full(len(synth.stages), -1)
        for r in records:
            if r.index < len(staged):
                staged[r.index] = r.stage
        out[cond.name] = (np.asarray(synth.stages), staged, time.perf_counter() - t0)
    return out


def _session(profile, model_name: str, manifest: str | None = None):
    """The session ``edge-run`` builds for the bundled model (or ``manifest``; onnxruntime,
    fp32, one thread), pushing a minute of samples at a time (any push size gives the same
    epochs)."""
    from edge.cli import DEFAULT_MODEL, MODELS_DIR
    from edge.models import Manifest, load_epoch_model
    from edge.models.step_runner import load_step_model
    from edge.session import Session
    from edge.staging import EpochStager, FrameStager

    name = DEFAULT_MODEL[model_name]
    manifest = Path(manifest) if manifest else MODELS_DIR / name / f"{name}.json"

    data = Manifest.load(manifest).data
    spec = profile.input(data["input_spec"])
    if data.get("kind") == "step":
        model = load_step_model(manifest, "onnxruntime", "fp32", 1)
        staging = tuple(data.get("staging_streams", data.get("required_streams", ())))
        steps = int(round(30.0 * spec.frame_hz))
        stager = FrameStager(model, spec.stream_columns(), staging, steps, 1.0 / spec.frame_hz)
    else:
        model = load_epoch_model(manifest, "onnxruntime", "fp32", 1)
        stager = EpochStager(model, [c.stream.name for c in spec.channels], spec.epoch_s)
    return Session(profile, spec, stager, push_s=60.0)


def _task(args):
    model, night, conds, data, max_s, manifest = args
    return model, night, stage_night(model, night, conds, data, max_s, manifest)


def _finite(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None  # JSON has no NaN


def summarise(model: str, cond: str, truth: np.ndarray, staged: np.ndarray) -> dict:
    import warnings

    from sklearn.metrics import balanced_accuracy_score, cohen_kappa_score

    warnings.filterwarnings("ignore", module="sklearn")

    labelled = truth >= 0
    scored = labelled & (staged >= 0)
    n = int(labelled.sum())
    both = (truth[scored], staged[scored])
    return {
        "model": "mamba_anne" if model == "anne" else "ulw_sleepnet",
        "dataset": DATASET[model],
        "condition": cond,
        "epochs": n,
        "unscored_fraction": float(1 - scored.sum() / n) if n else 0.0,
        "kappa": _finite(cohen_kappa_score(*both)) if scored.sum() > 1 else None,
        "balanced_accuracy": _finite(balanced_accuracy_score(*both)) if scored.sum() > 1 else None,
    }


def table(records: list[dict]) -> str:
    """The records as a Markdown table (RESULTS.md)."""
    rows = [
        "| model | condition | epochs | unscored | kappa | balanced acc. | kappa − clean |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        k, b, c = r["kappa"], r["balanced_accuracy"], r["kappa_clean"]
        rows.append(
            f"| {r['model']} | {r['condition']} | {r['epochs']:,} | "
            f"{100 * r['unscored_fraction']:.1f} % | "
            + (" – | – | – |" if k is None else f"{k:.3f} | {b:.3f} | {k - (c or 0):+.3f} |")
        )
    return "\n".join(rows)


def plot(records: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_k, ax_u) = plt.subplots(1, 2, figsize=(9, 3.4))
    for model in sorted({r["model"] for r in records}):
        rows = [r for r in records if r["model"] == model]
        pts = [(0.0, next(r for r in rows if r["condition"] == "clean"))]
        pts += [
            (float(r["condition"][5:-1]) / 100, r)
            for r in rows
            if r["condition"].startswith("loss ")
        ]
        pts.sort(key=lambda p: p[0])
        xs = [100 * p for p, _ in pts]
        ax_k.plot(xs, [r["kappa"] or 0.0 for _, r in pts], marker="o", label=model)
        ax_u.plot(xs, [100 * r["unscored_fraction"] for _, r in pts], marker="o", label=model)
    ax_k.set(
        xlabel="frames lost (%)", ylabel="Cohen's kappa", title="Agreement with PSG", ylim=(0, 1)
    )
    ax_u.set(xlabel="frames lost (%)", ylabel="epochs unscored (%)", title="Unscored epochs")
    for ax in (ax_k, ax_u):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, help="a data root laid out as ../shared/data")
    ap.add_argument("--quick", action="store_true", help="CI smoke run: 1 night, 20 min, 3 faults")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--models", nargs="+", choices=sorted(DEVICE), default=["anne", "psg"])
    ap.add_argument("--jobs", type=int, default=1, help="nights × conditions staged at once")
    ap.add_argument("--plot", type=Path, help="write the loss-rate figure here (PNG)")
    ap.add_argument("--max-nights", type=int, help="only the first N held-out nights per model")
    ap.add_argument("--anne-model", help="an ANNE step-model manifest (default: the bundled one)")
    ap.add_argument("--only", nargs="+", help="only these conditions (names as printed)")
    ap.add_argument(
        "--records",
        type=Path,
        nargs="+",
        help="print (and --plot) the records of earlier --json runs instead of running",
    )
    args = ap.parse_args(argv)
    if args.records:
        records = [r for f in args.records for r in json.loads(f.read_text(encoding="utf-8"))]
        if args.plot:
            plot(records, args.plot)
        print(json.dumps(records, indent=1) if args.json else table(records))
        return 0
    from edge.devices import load_device

    max_s = 1200.0 if args.quick else None
    tasks = []
    data = str(args.data) if args.data else None
    for model in args.models:
        conds = conditions(model, list(load_device(DEVICE[model]).streams), args.quick)
        if args.only:
            conds = [c for c in conds if c.name in args.only or c.name == "clean"]
        nights = held_out(model, args.data, args.quick, args.max_nights)
        manifest = args.anne_model if model == "anne" else None
        tasks += [(model, n, conds, data, max_s, manifest) for n in nights]
    t0 = time.perf_counter()
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            results = list(pool.map(_task, tasks))
    else:
        results = [_task(t) for t in tasks]
    pooled: dict[tuple[str, str], list] = {}
    for model, _, per_cond in results:
        for cond, (truth, staged, _) in per_cond.items():
            pooled.setdefault((model, cond), []).append((truth, staged))
    records = []
    for (model, cond), nights in pooled.items():
        truth = np.concatenate([t for t, _ in nights])
        staged = np.concatenate([s for _, s in nights])
        records.append(summarise(model, cond, truth, staged))
    for r in records:
        clean = next(c for c in records if c["model"] == r["model"] and c["condition"] == "clean")
        r["kappa_clean"] = clean["kappa"]
    if args.plot:
        plot(records, args.plot)
    if args.json:
        print(json.dumps(records, indent=1))
        return 0
    spent = time.perf_counter() - t0
    print(f"{machine_info()['cpu']}: {len(tasks)} nights, every condition, in {spent:.0f} s")
    print(table(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
