"""The benchmark scripts keep working (tiny sizes; no timing is asserted)."""

from tests.commands import run_json


def test_dsp_benchmark_quick_json():
    r = run_json("benchmarks/dsp.py", "--quick", "--json", module=False, timeout=300)
    assert {c["streams"] for c in r["per_device_second"]} == {1, 1000}
    assert all(c["median_us"] > 0 for c in r["per_device_second"])
    assert r["flatness"]["ratio"] > 0 and "resample_512_100_ours_1stream_us" in r["kernels"]
    assert r["machine"]["threads"] == "1"


def test_latency_benchmark_quick_json():
    records = run_json("benchmarks/latency.py", "--quick", "--json", module=False, timeout=300)
    keys = {"model", "backend", "precision", "batch", "p50_us", "p99_us", "min_us"}
    assert records and all(keys <= set(r) for r in records)
    ulw = [r for r in records if r["model"] == "ulw_sleepnet"]
    mamba = [r for r in records if r["model"].startswith("mamba")]
    assert {(r["backend"], r["precision"], r["batch"]) for r in mamba} == {
        (b, p, n)
        for b, p in [("numpy", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime", "int8"),
                     ("litert", "fp32"), ("native", "fp32"), ("torch-eager", "fp32")]
        for n in (1, 16)
    }  # fmt: skip
    assert all(r["per_stream_us"] > 0 and r["flops"] > r["macs"] for r in mamba)
    records = ulw
    assert {(r["backend"], r["precision"]) for r in records} == {
        ("onnxruntime", "fp32"),
        ("onnxruntime", "int8"),
        ("litert", "fp32"),  # LiteRT int8 is a research export edge-run does not serve
        ("native", "fp32"),
        ("native", "int8"),
        ("torch-eager", "fp32"),
    }
    assert all(r["params"] == 13_337 and r["macs"] == 3_498_352 for r in records)


def test_throughput_benchmark_quick_json():
    r = run_json("benchmarks/throughput.py", "--quick", "--json", module=False, timeout=600)
    assert r["epochs"] == 120 and r["x_real_time"] > 1
    assert r["memory"]["state_bytes_per_stream"] > 0
    g = r["cost_growth"]["hour_1"]
    assert g["naive_over_streaming"] > 0 and g["streaming_us_per_epoch"] > 0
    assert r["anne"]["epochs"] == 60 and r["anne"]["x_real_time"] > 1
    backends = r["anne"]["backends"]
    assert set(backends) == {"onnxruntime", "litert", "native", "numpy"}
    assert all(b["epochs"] == 60 and b["x_real_time"] > 1 for b in backends.values())
    assert r["anne"]["frame_by_frame"]["x_real_time"] > 1
    assert r["anne"]["state_bytes_per_stream"] > 1140 * 4  # operators + the recurrent state
    g = r["anne"]["cost_growth"]  # the half-hour night's one mark
    assert (
        g["hour_0.5"]["streaming_us_per_second"] > 0 and g["hour_0.5"]["naive_over_streaming"] > 1
    )
    assert g["last_over_first"] == 1.0
    (live,) = r["live"]["levels"]  # two gateway devices through mosquitto into one engine
    assert live["devices"] == 2 and live["epochs_missing"] == 0 and live["epochs_timed"] == 2
    assert 0.4 < live["delay_p50_s"] < 30  # at least the PPG frame's 0.5 s, never lost


def test_reliability_benchmark_quick_json():
    records = run_json("benchmarks/reliability.py", "--quick", "--json", module=False, timeout=300)
    keys = {
        "scenario",
        "devices",
        "hours",
        "faults",
        "frames_sent",
        "frames_lost_unexpected",
        "epochs_expected",
        "epochs_written",
        "epochs_doubled",
        "peak_rss_mb",
        "outcome",
    }
    assert [r["scenario"] for r in records] == ["fuzz", "soak", "file_deleted"]
    assert all(keys <= set(r) and r["outcome"] == "pass" for r in records), records
    fuzz, soak, _ = records
    assert fuzz["frames_sent"] >= 20_000 and fuzz["exceptions_escaped"] == 0
    assert fuzz["rejected_by_reason"]["absurd timestamp"] > 0
    assert soak["epochs_written"] == soak["epochs_expected"] > 0 and soak["epochs_doubled"] == 0
