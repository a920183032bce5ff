"""PMData (Fitbit Versa 2 + PMSys self-reports) as lifelog days with day-level targets.

A *labelled day* is a local calendar day F (Europe/Oslo) of sensor data and events, paired with
the self-report submitted on the morning of F + 1 (sleep quality, mood, stress, fatigue,
readiness) and with the sleep-metric targets of the night F → F + 1 (the Fitbit main sleep whose
``dateOfSleep`` is F + 1). So the day predicts the night that follows it, as in the ETRI lifelog
setting, and the night being predicted is never an input: sleep episodes enter the minute
channels only when their ``dateOfSleep`` is F or earlier.

Minute channels (1,440 per day, NaN = unknown): steps (only p03, p10, p13, p14, p16 have minute
steps here; absent minutes of a day that has any are 0, as Fitbit omits them), in bed (inside a
sleep episode) and asleep (a non-wake stage). Event channels per minute: exercise session
(fraction of the minute), its mean heart rate / 200, and PMSys session RPE / 10 while a logged
session runs. Daily summaries feed the gradient-boosting baseline. Files are read as JSON/CSV
only.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

TZ = ZoneInfo("Europe/Oslo")
MINUTES = 1440
MINUTE_CHANNELS = ("steps", "in_bed", "asleep")
EVENT_CHANNELS = ("exercise", "exercise_hr", "session_rpe")
REPORT_ITEMS = ("sleep_quality", "mood", "stress", "fatigue", "readiness")
SUMMARY_FEATURES = (
    "sedentary_min",
    "light_min",
    "moderate_min",
    "very_active_min",
    "resting_hr",
    "steps_total",
    "exercise_min",
    "exercise_hr",
    "srpe_load",
    "meals",
    "fluids",
    "alcohol",
    "prev_tst_h",
    "prev_efficiency",
    "prev_latency_min",
    "prev_waso_min",
    "prev_bedtime_h",
    "sleep_score",
    "weekday",
)
WAKE_LEVELS = {"wake", "awake", "restless"}


@dataclass
class Day:
    """One local calendar day of one subject and the labels reported after it."""

    subject: str
    day: date  # the sensor day F; reports are from the morning of F + 1
    minutes: np.ndarray  # (len(MINUTE_CHANNELS), 1440) float32, NaN = unknown
    events: np.ndarray  # (len(EVENT_CHANNELS), 1440) float32
    summary: np.ndarray  # (len(SUMMARY_FEATURES),) float64, NaN = unknown
    reports: dict[str, float] = field(default_factory=dict)  # raw items, NaN = missing
    night: dict[str, float] = field(default_factory=dict)  # tst_h, efficiency, latency, waso

    @property
    def report_day(self) -> date:
        """The morning the labels were reported (and the night ended): F + 1."""
        return self.day + timedelta(days=1)


def _read_json(path: Path):
    if path.exists():
        return json.loads(path.read_text(encoding="utf-8"))
    gz = path.with_name(path.name + ".gz")
    if gz.exists():
        with gzip.open(gz, "rt", encoding="utf-8") as f:
            return json.load(f)
    return None


def _daily_values(path: Path) -> dict[date, float]:
    out: dict[date, float] = {}
    for row in _read_json(path) or []:
        v = row["value"]
        v = v.get("value") if isinstance(v, dict) else v
        try:
            x = float(v)
        except (TypeError, ValueError):
            continue
        out[datetime.strptime(row["dateTime"][:10], "%Y-%m-%d").date()] = x
    return out


def _episode_stages(ep: dict) -> tuple[datetime, np.ndarray]:
    """Episode start (local, naive) and its stage per second (True = asleep)."""
    start = datetime.fromisoformat(ep["startTime"][:19])
    n = int(round(ep["duration"] / 1000))
    asleep = np.zeros(n, bool)
    levels = ep.get("levels", {})
    for key in ("data", "shortData"):  # shortData (brief wakes) overrides data
        for seg in levels.get(key, []) or []:
            a = int((datetime.fromisoformat(seg["dateTime"][:19]) - start).total_seconds())
            b = min(n, a + int(seg["seconds"]))
            if a < n and b > 0:
                asleep[max(a, 0) : b] = seg["level"] not in WAKE_LEVELS
    return start, asleep


def night_metrics(asleep: np.ndarray, start: datetime) -> dict[str, float]:
    """TST (h), efficiency (%), onset latency (min), WASO (min), bedtime (h after noon)."""
    idx = np.flatnonzero(asleep)
    if not len(idx):
        return {"tst_h": 0.0, "efficiency": 0.0, "latency_min": np.nan, "waso_min": np.nan}
    tst = float(asleep.sum())
    first, last = idx[0], idx[-1]
    bed = (start.hour + start.minute / 60 - 12) % 24
    return {
        "tst_h": tst / 3600,
        "efficiency": 100 * tst / len(asleep),
        "latency_min": first / 60,
        "waso_min": float((~asleep[first : last + 1]).sum()) / 60,
        "bedtime_h": bed,
    }


def _local(ts: str) -> datetime:
    """A UTC ISO timestamp ("...Z") as naive local (Europe/Oslo) time."""
    t = pd.Timestamp(ts)
    if t.tzinfo is None:
        t = t.tz_localize("UTC")
    return t.tz_convert(TZ).tz_localize(None).to_pydatetime()


def _mark(arr: np.ndarray, day0: date, start: datetime, end: datetime, value: float) -> None:
    """Set minute cells of ``arr`` (days × 1440, from ``day0``) covered by [start, end)."""
    base = datetime.combine(day0, datetime.min.time())
    a = (start - base).total_seconds() / 60
    b = (end - base).total_seconds() / 60
    lo, hi = max(int(np.floor(a)), 0), min(int(np.ceil(b)), arr.size)
    for m in range(lo, hi):
        frac = min(b, m + 1) - max(a, m)
        if frac > 0:
            arr.flat[m] = max(arr.flat[m], value * frac) if value > 0 else arr.flat[m]


def load_subject(folder: Path) -> list[Day]:
    """Every sensor day of one participant folder with the reports of the next morning."""
    folder = Path(folder)
    sid = folder.name
    wpath = folder / "pmsys" / "wellness.csv"
    if not wpath.exists():
        raise FileNotFoundError(f"{wpath}: no wellness.csv (not a PMData participant folder)")
    well = pd.read_csv(wpath)
    reports: dict[date, dict[str, float]] = {}
    for _, r in well.sort_values("effective_time_frame").iterrows():
        d = _local(r["effective_time_frame"]).date()
        vals = {}
        for k in REPORT_ITEMS:
            v = pd.to_numeric(r.get(k), errors="coerce")
            bad = pd.isna(v) or (k != "readiness" and v == 0)
            vals[k] = np.nan if bad else float(v)
        reports[d] = vals  # the day's last report wins
    episodes = []
    for ep in _read_json(folder / "fitbit" / "sleep.json") or []:
        start, asleep = _episode_stages(ep)
        dos = datetime.strptime(ep["dateOfSleep"], "%Y-%m-%d").date()
        episodes.append((dos, bool(ep.get("mainSleep")), start, asleep))
    nights: dict[date, dict[str, float]] = {}
    for dos, main, start, asleep in sorted(episodes, key=lambda e: len(e[3])):
        if main:
            nights[dos] = night_metrics(asleep, start)  # the longest main sleep wins
    steps_rows = _read_json(folder / "fitbit" / "steps.json") or []
    exercises = _read_json(folder / "fitbit" / "exercise.json") or []
    srpe_path = folder / "pmsys" / "srpe.csv"
    srpe = pd.read_csv(srpe_path) if srpe_path.exists() else pd.DataFrame()
    rep_path = folder / "googledocs" / "reporting.csv"
    diary = pd.read_csv(rep_path) if rep_path.exists() else pd.DataFrame()
    daily = {
        k: _daily_values(folder / "fitbit" / f"{f}.json")
        for k, f in (
            ("sedentary_min", "sedentary_minutes"),
            ("light_min", "lightly_active_minutes"),
            ("moderate_min", "moderately_active_minutes"),
            ("very_active_min", "very_active_minutes"),
            ("resting_hr", "resting_heart_rate"),
        )
    }
    score = {}
    sp = folder / "fitbit" / "sleep_score.csv"
    if sp.exists():
        for _, r in pd.read_csv(sp).iterrows():
            score[_local(r["timestamp"]).date()] = float(r["overall_score"])
    all_days = set(reports) | set(nights) | {d for d in daily["sedentary_min"]}
    if not all_days:
        return []
    day0 = min(all_days) - timedelta(days=1)
    n_days = (max(all_days) - day0).days + 1
    steps = np.full((n_days, MINUTES), np.nan, np.float32)
    for row in steps_rows:
        t = datetime.fromisoformat(row["dateTime"])
        i = (t.date() - day0).days
        if 0 <= i < n_days:
            if np.isnan(steps[i]).all():
                steps[i] = 0.0
            steps[i, t.hour * 60 + t.minute] = float(row["value"])
    in_bed = np.zeros((n_days, MINUTES), np.float32)
    asleep_m = np.zeros((n_days, MINUTES), np.float32)
    for _dos, _main, start, asleep in episodes:
        base = datetime.combine(day0, datetime.min.time())
        off = int((start - base).total_seconds())
        n = len(asleep)
        sec = np.arange(off, off + n)
        ok = (sec >= 0) & (sec < n_days * 86400)
        mins = sec[ok] // 60
        np.add.at(in_bed.reshape(-1), mins, 1 / 60)
        np.add.at(asleep_m.reshape(-1), mins, asleep[ok] / 60)
    ev = np.zeros((len(EVENT_CHANNELS), n_days, MINUTES), np.float32)
    ex_min: dict[date, float] = {}
    ex_hr: dict[date, list[float]] = {}
    for e in exercises:
        st = datetime.fromisoformat(e["startTime"][:19])
        en = st + timedelta(milliseconds=float(e.get("duration", 0)))
        hr = float(e.get("averageHeartRate") or 0)
        _mark(ev[0], day0, st, en, 1.0)
        _mark(ev[1], day0, st, en, hr / 200)
        ex_min[st.date()] = ex_min.get(st.date(), 0.0) + (en - st).total_seconds() / 60
        ex_hr.setdefault(st.date(), []).append(hr)
    load: dict[date, float] = {}
    for _, r in srpe.iterrows():
        en = _local(r["end_date_time"])
        dur = float(np.nan_to_num(pd.to_numeric(r["duration_min"], errors="coerce")))
        rpe = float(np.nan_to_num(pd.to_numeric(r["perceived_exertion"], errors="coerce")))
        _mark(ev[2], day0, en - timedelta(minutes=dur), en, rpe / 10)
        load[en.date()] = load.get(en.date(), 0.0) + rpe * dur
    diary_by: dict[date, tuple[float, float, float]] = {}
    for _, r in diary.iterrows():
        try:
            d = datetime.strptime(str(r["date"]), "%d/%m/%Y").date()
        except ValueError:
            continue
        meals = 0.0 if pd.isna(r.get("meals")) else float(len(str(r["meals"]).split(",")))
        fluids = float(pd.to_numeric(r.get("glasses_of_fluid"), errors="coerce"))
        alcohol = 1.0 if str(r.get("alcohol_consumed")).strip().lower() == "yes" else 0.0
        diary_by[d] = (meals, fluids, alcohol)
    days = []
    for i in range(n_days):
        f = day0 + timedelta(days=i)
        covered = (f + timedelta(days=1)) in reports or (f + timedelta(days=1)) in nights
        if not covered:
            continue
        prev = nights.get(f, {})
        meals, fluids, alcohol = diary_by.get(f, (np.nan, np.nan, np.nan))
        hr = daily["resting_hr"].get(f, np.nan)
        summary = np.array(
            [
                daily["sedentary_min"].get(f, np.nan),
                daily["light_min"].get(f, np.nan),
                daily["moderate_min"].get(f, np.nan),
                daily["very_active_min"].get(f, np.nan),
                hr if hr and hr > 0 else np.nan,
                np.nansum(steps[i]) if not np.isnan(steps[i]).all() else np.nan,
                ex_min.get(f, 0.0),
                float(np.mean(ex_hr[f])) if f in ex_hr else np.nan,
                load.get(f, 0.0),
                meals,
                fluids,
                alcohol,
                prev.get("tst_h", np.nan),
                prev.get("efficiency", np.nan),
                prev.get("latency_min", np.nan),
                prev.get("waso_min", np.nan),
                prev.get("bedtime_h", np.nan),
                score.get(f, np.nan),
                float(f.weekday()),
            ],
            np.float64,
        )
        nxt = f + timedelta(days=1)
        days.append(
            Day(
                subject=sid,
                day=f,
                minutes=np.stack([steps[i], np.minimum(in_bed[i], 1), np.minimum(asleep_m[i], 1)]),
                events=ev[:, i].copy(),
                summary=summary,
                reports=reports.get(nxt, {k: np.nan for k in REPORT_ITEMS}),
                night=nights.get(nxt, {}),
            )
        )
    return days


def load(root: Path) -> list[Day]:
    """All participants (``p01`` … ``p16``) under a PMData folder."""
    root = Path(root)
    folders = sorted(p for p in root.glob("p[0-9][0-9]") if p.is_dir())
    if not folders:
        raise FileNotFoundError(f"{root}: no participant folders p01..p16 (not a PMData folder)")
    return [d for f in folders for d in load_subject(f)]
