"""Export the causal Mamba step: ``python -m export.mamba --checkpoint runs/mamba5/best.pt``.

The step is one graph with explicit state inputs and outputs (``export.mamba_graph.LeanStep``:
``MambaStager.step`` with its normalisation weights folded and a softplus every runtime's fast
path runs): ``features`` [B, 140] (already
normalised: the runtime applies the manifest's fixed statistics), ``conv`` [B, layers, d_inner,
d_conv-1], ``h`` [B, layers, d_inner, d_state] → ``logits`` [B, classes], ``conv_out``,
``h_out``. The runtime feeds the outputs back as the next call's inputs, so a night is stepped
one second at a time with its state carried over. Files:

- ``onnx_fp32``: ``torch.onnx.export(dynamo=True, external_data=False)``, dynamic batch;
- ``onnx_int8``: static QDQ of linear layers only — the pre-MLP's two hidden layers, half the
  step's multiply-adds; the other linear layers, dt, A, D, the convolution and the state stay
  fp32 (DESIGN §5; which layers tolerate int8 was measured, see ``quantize_linear_int8``),
  calibrated on features and states of stepped training nights, sensors dropped at random;
- ``onnx_fp32_seq``: ``export.mamba_graph.LeanSequence``, 32 consecutive seconds of one
  stream per call (the recurrence unrolled, the rest over all 32 at once), used by replays;
- ``tflite_fp32``: litert-torch, batch 1, and ``tflite_fp32_block``: 64 streams per call;
- ``numpy_weights``: the state_dict as .npz for the numpy reference step;
and the manifest: sha256 and size of every file, inputs, classes, normalisation statistics,
params, MACs / FLOPs per step (the SSM's element-wise work counted by hand), parity.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

from export.mamba_graph import LeanSequence, LeanStep
from training.models.mamba import MambaStager

NAME = "mamba_anne"
INT8_LAYERS = ("pre.3.", "pre.5.")  # see quantize_linear_int8


def export_step_onnx(model: MambaStager, path: Path) -> Path:
    model.eval()
    conv, h = model.initial_state(2)
    batch = torch.export.Dim("batch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            LeanStep(model).eval(),
            (torch.zeros(2, model.pre[1].in_features), conv, h),
            input_names=["features", "conv", "h"],
            output_names=["logits", "conv_out", "h_out"],
            dynamic_shapes={"features": {0: batch}, "conv": {0: batch}, "h": {0: batch}},
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    program.save(str(path))
    return path


def export_sequence_onnx(model: MambaStager, path: Path, steps: int) -> Path:
    """``LeanSequence`` with a fixed length of ``steps`` seconds (the runtime zero-pads)."""
    model.eval()
    conv, h = model.initial_state(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            LeanSequence(model).eval(),
            (torch.zeros(steps, model.pre[1].in_features), conv, h),
            input_names=["features", "conv", "h"],
            output_names=["logits", "windows", "states"],
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    program.save(str(path))
    return path


SEQUENCE_STEPS = 32  # seconds per call of the sequence graph
TFLITE_BLOCK = 64  # streams per invocation of the block file


def export_step_tflite(model: MambaStager, path: Path, batch: int = 1) -> Path:
    """A fixed-batch .tflite step (litert-torch cannot export this graph with a dynamic batch:
    its lowering asserts on the symbolic dimension)."""
    import litert_torch

    from export.tflite import _quiet

    model.eval()
    conv, h = model.initial_state(batch)
    with _quiet():
        litert_torch.convert(
            LeanStep(model).eval(), (torch.zeros(batch, model.pre[1].in_features), conv, h)
        ).export(str(path))
    return path


def step_flops(model: MambaStager) -> dict[str, int]:
    """Multiply-adds of the linear layers and element-wise FLOPs of one step, by hand (graph
    counters miss the SSM's element-wise work). Transcendentals count as one FLOP each."""
    linear = sum(
        m.in_features * m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear)
    )
    first = model.layers[0]
    di, ds, dc, dm = first.d_inner, first.d_state, first.d_conv, model.pre[-1].out_features
    per_layer = (
        3 * dm  # RMSNorm
        + 2 * di * dc
        + 4 * di  # depthwise conv + bias + SiLU
        + 2 * di  # softplus(dt)
        + di * ds  # delta · A
        + di * ds  # exp
        + 3 * di * ds  # h = decay·h + (delta·u)·B
        + 2 * di * ds  # y = Σ h·C
        + 2 * di  # + D·u
        + 5 * di  # gate: y · SiLU(z)
        + dm  # residual
    )
    n_in = model.pre[1].in_features
    elementwise = 2 * n_in + 3 * 100 + len(model.layers) * per_layer + 3 * dm
    return {
        "linear_macs": int(linear),
        "elementwise_flops": int(elementwise),
        "flops": int(2 * linear + elementwise),
    }


def stepped_states(
    runner, nights: list[np.ndarray], n: int, seed: int = 0
) -> dict[str, np.ndarray]:
    """``n`` (features, conv, h) triples sampled from normalised nights stepped from a zero
    state by ``runner`` (all nights in one batched call per second): the inputs the step sees in
    deployment, states included, with sensors dropped for random stretches."""
    from training.data.anne import DROPPABLE, stream_columns

    rng = np.random.default_rng(seed)
    cols = stream_columns()
    length = min(len(x) for x in nights)
    x = np.stack([x[:length] for x in nights]).copy()  # [B, T, F]
    for b in range(len(nights)):
        for s in DROPPABLE:
            if rng.random() < 0.3:
                a = int(rng.integers(0, length))
                x[b, a : a + int(rng.integers(600, 3600)), cols[s]] = 0.0
    picks = rng.choice(length, size=min(length, -(-n // len(nights))), replace=False)
    wanted = np.zeros(length, dtype=bool)
    wanted[picks] = True
    conv, h = runner.initial_state(len(nights))
    feats, convs, hs = [], [], []
    for t in range(length):
        if wanted[t]:
            feats.append(x[:, t].copy())
            convs.append(conv.copy())
            hs.append(h.copy())
        _, conv, h = runner.step(x[:, t], conv, h)
    return {
        "features": np.concatenate(feats).astype(np.float32),
        "conv": np.concatenate(convs).astype(np.float32),
        "h": np.concatenate(hs).astype(np.float32),
    }


def quantize_linear_int8(fp32: Path, out: Path, calib: dict[str, np.ndarray]) -> Path:
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            k = len(calib["features"])
            self._it = iter(
                [{name: v[i : i + 64] for name, v in calib.items()} for i in range(0, k, 64)]
            )

        def get_next(self):
            return next(self._it, None)

    pre = out.with_suffix(".pre.onnx")
    quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
    graph = onnx.load(str(pre)).graph
    linear = [n for n in graph.node if n.op_type in ("MatMul", "Gemm")]
    # int8 for the two hidden 100×100 layers of the pre-MLP (20,000 of the step's 38,890
    # linear multiply-adds). Measured (epoch agreement with fp32 on the three validation nights,
    # 8,192 calibration steps): these two 0.999 / 0.981 / 0.997; the whole pre-MLP 0.975 / 0.965
    # / 0.982 (its input layer sees the raw normalised features, its output layer feeds the
    # 10-wide Mamba); + head 0.97; + the Mamba in/x/out projections 0.35 — errors in d_model 10
    # compound through the recurrent state. dt, A, D, the convolution and the state stay fp32.
    keep_fp32 = [n.name for n in linear if not n.input[1].startswith(INT8_LAYERS)]
    quantize_static(
        str(pre),
        str(out),
        Reader(),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=["MatMul", "Gemm"],
        nodes_to_exclude=keep_fp32,
        per_channel=True,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.Percentile,
        extra_options={"CalibPercentile": 99.99},
    )
    pre.unlink()
    return out


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _entry(path: Path) -> dict:
    return {"path": path.name, "sha256": sha256(path), "bytes": path.stat().st_size}


def _torch_logits(model: MambaStager, x: np.ndarray) -> np.ndarray:
    """torch's full-sequence forward over x [T, F] (normalised) → logits [T, K]."""
    with torch.no_grad():
        return model(torch.from_numpy(x)[None])[0].numpy()


def _torch_and_stepped(model: MambaStager, runner, x: np.ndarray):
    """Logits of torch's full forward and of ``runner`` stepped over ``x`` [T, F] one second at
    a time with its state carried (the runtime's own runner, fed normalised features)."""
    want = _torch_logits(model, x)
    conv, h = runner.initial_state(1)
    got = np.empty_like(want)
    for t in range(len(x)):
        got[t : t + 1], conv, h = runner.step(x[t : t + 1], conv, h)
    return want, got


def carried_parity(model: MambaStager, runner, x: np.ndarray) -> float:
    """max |Δ logits| between torch and ``runner`` over carried steps."""
    want, got = _torch_and_stepped(model, runner, x)
    return float(np.abs(got - want).max())


def sequence_parity(model: MambaStager, runner, x: np.ndarray, chunk: int = 1000) -> float:
    """max |Δ logits| between torch and ``runner.sequence`` fed ``chunk`` seconds a call."""
    want = _torch_logits(model, x)
    conv, h = runner.initial_state(1)
    got = []
    for a in range(0, len(x), chunk):
        y, conv, h = runner.sequence(x[a : a + chunk], conv, h)
        got.append(y)
    return float(np.abs(np.concatenate(got) - want).max())


def epoch_agreement(model: MambaStager, runner, x: np.ndarray) -> float:
    """Share of 30-s epochs whose argmax of mean logits agrees between torch and ``runner``."""
    want, got = _torch_and_stepped(model, runner, x)
    n = len(x) // 30
    a = want[: n * 30].reshape(n, 30, -1).mean(1).argmax(1)
    b = got[: n * 30].reshape(n, 30, -1).mean(1).argmax(1)
    return float((a == b).mean())


def export_mamba(
    checkpoint: Path,
    out: Path,
    evaluation: Path | None = None,
    tflite: bool = True,
    wake_sleep_evaluation: Path | None = None,
    validation_evaluation: Path | None = None,
    calibration_nights: int = 4,
    parity_steps: int = 10_000,
    cache: Path = Path("runs/anne_cache"),
    also: tuple[Path, ...] = (),
) -> dict:
    from edge.models.step_runner import LiteRTStepModel, NumpyStepModel, OnnxStepModel
    from training.data.anne import CLASS_NAMES, STAGING_STREAMS
    from training.train_mamba import load_checkpoint, load_nights

    out.mkdir(parents=True, exist_ok=True)
    model, stats, ck = load_checkpoint(checkpoint)
    cfg = ck["config"]
    if cfg["bidirectional"]:
        raise SystemExit("export: the bidirectional variant has no causal step to export")
    days = ck.get("wake_sleep_train", [])[:1]  # an evening and morning too, if it trained on them
    calib_nights = load_nights(days, cache, 0, None, None, mmash=True)
    calib_nights += load_nights(
        ck["train_nights"][: calibration_nights - len(calib_nights)], cache, 0, None, None
    )
    val_night = load_nights(ck["val_nights"][:1], cache, 0, None, None)[0]
    xs = [stats.apply(n.x) for n in calib_nights]

    files = {
        "onnx_fp32": out / f"{NAME}_fp32.onnx",
        "onnx_int8": out / f"{NAME}_int8.onnx",
        "numpy_weights": out / f"{NAME}_weights.npz",
    }
    export_step_onnx(model, files["onnx_fp32"])
    files["onnx_fp32_seq"] = export_sequence_onnx(
        model, out / f"{NAME}_fp32_seq{SEQUENCE_STEPS}.onnx", SEQUENCE_STEPS
    )
    calib = stepped_states(OnnxStepModel(files["onnx_fp32"]), xs, 8192)
    quantize_linear_int8(files["onnx_fp32"], files["onnx_int8"], calib)
    np.savez(files["numpy_weights"], **{k: v.numpy() for k, v in model.state_dict().items()})
    probe = stats.apply(val_night.x)[:parity_steps]
    parity = {
        "steps": len(probe),
        "onnx_fp32_vs_torch_max_abs_logit": carried_parity(
            model, OnnxStepModel(files["onnx_fp32"]), probe
        ),
        "onnx_fp32_seq_vs_torch_max_abs_logit": sequence_parity(
            model, OnnxStepModel(files["onnx_fp32"], sequence_path=files["onnx_fp32_seq"]), probe
        ),
        "numpy_vs_torch_max_abs_logit": carried_parity(
            model, NumpyStepModel(files["numpy_weights"]), probe
        ),
        "onnx_int8_epoch_agreement_val_night": epoch_agreement(
            model, OnnxStepModel(files["onnx_int8"]), stats.apply(val_night.x)
        ),
    }
    if tflite:
        files["tflite_fp32"] = export_step_tflite(model, out / f"{NAME}_fp32.tflite")
        files["tflite_fp32_block"] = export_step_tflite(
            model, out / f"{NAME}_fp32_b{TFLITE_BLOCK}.tflite", TFLITE_BLOCK
        )
        parity["tflite_fp32_vs_torch_max_abs_logit"] = carried_parity(
            model, LiteRTStepModel(files["tflite_fp32"]), probe
        )
    files["torch_checkpoint"] = out / f"causal_{cfg['classes']}class.pt"
    _save_weights(files["torch_checkpoint"], model.state_dict(), cfg, stats.to_json())
    evaluation_weights = {}
    for path in also:  # the other class counts and the bidirectional variants, for evaluation
        other, other_stats, other_ck = load_checkpoint(path)
        c = other_ck["config"]
        kind = "bidirectional" if c["bidirectional"] else "causal"
        target = out / f"{kind}_{c['classes']}class.pt"
        _save_weights(target, other.state_dict(), c, other_stats.to_json())
        evaluation_weights[target.stem] = _entry(target) | {
            "val_balanced_accuracy": other_ck.get("val_balanced_accuracy")
        }
    conv, h = model.initial_state(1)
    classes = list(CLASS_NAMES[cfg["classes"]])
    manifest = {
        "name": NAME,
        "kind": "step",
        "task": "causal sleep staging, one step per second over ANNE features; 30-s epochs "
        "from the mean of 30 one-second logits",
        "device": "anne",
        "input_spec": "mamba",
        "files": {k: _entry(v) for k, v in files.items()},
        "inputs": [
            {"name": "features", "shape": ["batch", 140], "dtype": "float32", "normalised": True},
            {"name": "conv", "shape": ["batch", *conv.shape[1:]], "dtype": "float32"},
            {"name": "h", "shape": ["batch", *h.shape[1:]], "dtype": "float32"},
        ],
        "outputs": [
            {"name": "logits", "shape": ["batch", len(classes)], "dtype": "float32"},
            {"name": "conv_out", "shape": ["batch", *conv.shape[1:]], "dtype": "float32"},
            {"name": "h_out", "shape": ["batch", *h.shape[1:]], "dtype": "float32"},
        ],
        "state_floats_per_stream": int(conv[0].numel() + h[0].numel()),
        "classes": classes,
        "normalisation": {
            **stats.to_json(),
            "note": "fixed per-feature mean/std of the training nights (causal); missing → 0",
        },
        # a second is stepped when any of these is valid; any other stream may be missing
        "staging_streams": list(STAGING_STREAMS),
        "params": int(sum(p.numel() for p in model.parameters())),
        **step_flops(model),
        "parity": parity,
        "training": {
            "data": cfg["data"],
            "train_subjects": ck["train_nights"],
            "val_subjects": ck["val_nights"],
            "wake_sleep_data": cfg.get("wake_sleep_data"),
            "wake_sleep_train_users": ck.get("wake_sleep_train", []),
            "wake_sleep_val_users": ck.get("wake_sleep_val", []),
            "recipe": {
                k: cfg.get(k)
                for k in (
                    "crop_s",
                    "batch",
                    "lr",
                    "modality_dropout",
                    "burst_dropout",
                    "link_faults",
                    "init",
                    "seed",
                    "mmash_weight",
                )
            },
            "epoch": ck["epoch"],
            "val_balanced_accuracy": ck["val_balanced_accuracy"],
        },
    }
    manifest["int8"] = {
        "quantized_layers": [k.rstrip(".") for k in INT8_LAYERS],
        "quantized_macs": sum(model.pre[i].in_features * model.pre[i].out_features for i in (3, 5)),
        "note": "static QDQ, per-channel int8 weights, int8 activations (99.99th percentile); "
        "every other layer, dt, A, D, the convolution and the state in fp32",
    }
    manifest["evaluation_weights"] = evaluation_weights
    with_metrics(manifest, evaluation, wake_sleep_evaluation, validation_evaluation)
    (out / f"{NAME}.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return manifest


METRIC_KEYS = {
    "evaluation": "metrics",
    "wake_sleep_evaluation": "metrics_wake_sleep_mmash",
    "validation_evaluation": "metrics_validation",
}


def with_metrics(manifest: dict, *evaluations: Path | None) -> dict:
    """Sets the manifest's metrics from ``python -m training.evaluate --json`` files, in the
    order of ``METRIC_KEYS`` (held-out Walch, held-out MMASH, Walch validation); a file not
    given leaves its key as it was."""
    for key, path in zip(METRIC_KEYS.values(), evaluations, strict=True):
        if path is not None:
            manifest[key] = json.loads(Path(path).read_text(encoding="utf-8"))
    return manifest


def update_metrics(out: Path, *evaluations: Path | None) -> dict:
    """Rewrites only the metrics of the manifest in ``out`` (the files and their hashes stay)."""
    path = out / f"{NAME}.json"
    manifest = with_metrics(json.loads(path.read_text(encoding="utf-8")), *evaluations)
    path.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return manifest


def _save_weights(path: Path, state: dict, config: dict, stats: dict) -> None:
    """Weights as training/evaluate_mamba.load_weights reads them (no optimiser state)."""
    torch.save({"model": state, "config": config, "stats": stats}, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m export.mamba", description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", type=Path)
    ap.add_argument("--out", type=Path, default=Path("edge/models/mamba_anne"))
    ap.add_argument("--evaluation", type=Path, help="JSON from python -m training.evaluate")
    ap.add_argument(
        "--wake-sleep-evaluation",
        type=Path,
        help="JSON from python -m training.evaluate --model mamba --dataset mmash",
    )
    ap.add_argument(
        "--validation-evaluation",
        type=Path,
        help="JSON from python -m training.evaluate --model mamba --dataset walch --split val",
    )
    ap.add_argument(
        "--metrics-only",
        action="store_true",
        help="only set the metrics of the manifest in --out from the evaluation JSON files",
    )
    ap.add_argument("--cache", type=Path, default=Path("runs/anne_cache"), help="feature cache")
    ap.add_argument(
        "--also",
        type=Path,
        nargs="*",
        default=[],
        help="more checkpoints (other class counts, bidirectional) bundled for evaluation",
    )
    ap.add_argument("--no-tflite", action="store_true", help="skip TFLite (no litert extra)")
    args = ap.parse_args(argv)
    evaluations = (args.evaluation, args.wake_sleep_evaluation, args.validation_evaluation)
    if args.metrics_only:
        update_metrics(args.out, *evaluations)
        print(f"export: metrics of {args.out / (NAME + '.json')} updated")
        return 0
    if args.checkpoint is None:
        ap.error("--checkpoint is required (or --metrics-only)")
    m = export_mamba(
        args.checkpoint,
        args.out,
        args.evaluation,
        tflite=not args.no_tflite,
        cache=args.cache,
        also=tuple(args.also),
        wake_sleep_evaluation=args.wake_sleep_evaluation,
        validation_evaluation=args.validation_evaluation,
    )
    print(f"export: {args.out / m['files']['onnx_fp32']['path']} parity {m['parity']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
