"""Checkpoints: the whole pipeline's state in one file, written atomically, read as data only.

One ``.npz``: the session snapshot (operator arrays + bookkeeping) and a JSON ``meta`` record
(source position, output position, the run's configuration). Written to a temporary file,
fsynced, then renamed over the previous one, so a crash at any instant leaves either the old or
the new checkpoint, never a torn one.

Nothing read back can run code: arrays are loaded with ``allow_pickle=False`` and must be
plain numbers (bool, integer, float); structured state (``pack``/``unpack``) is JSON whose
arrays are stored beside it. A file that is not such a checkpoint — not a zip, a member cut
short or altered (zip CRC), JSON that does not parse, a missing key, a wrong type or dtype —
raises ``CheckpointError`` with one line, never another exception.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np


class CheckpointError(RuntimeError):
    """No usable checkpoint, or one written by a run with another configuration."""


ARRAY_KINDS = "biuf"  # bool, signed, unsigned, float: no objects, strings or records
ARRAY_TAG = "$array"  # {"$array": "name"} in packed JSON: the array stored under that name
LOG_FILES = {"jsonl": "epochs.jsonl", "csv": "hypnogram.csv"}  # edge.sinks.epoch_log's files


def save(path: Path, arrays: dict[str, np.ndarray], meta: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays, meta=json_array(meta))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    """The checkpoint's arrays and its checked ``meta``; ``CheckpointError`` if unusable."""
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path} to resume from")
    try:
        with zipfile.ZipFile(path) as zf:  # np.savez stores members: nothing to inflate
            packed = [i.filename for i in zf.infolist() if i.compress_type != zipfile.ZIP_STORED]
        if packed:
            raise CheckpointError(f"{path}: compressed member {packed[0]!r}, not ours")
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 (a damaged zip fails in many ways: all refused)
        raise CheckpointError(f"{path} is not a readable checkpoint ({_brief(exc)})") from None
    if "meta" not in arrays:
        raise CheckpointError(f"{path} is not a checkpoint: no meta record")
    for name, a in arrays.items():
        if a.dtype.kind not in ARRAY_KINDS:
            raise CheckpointError(f"{path}: array {name!r} has dtype {a.dtype}, not plain numbers")
    meta = parse_json(arrays.pop("meta"), f"{path} meta")
    _check_meta(meta, path)
    return arrays, meta


def _check_meta(meta: Any, path: Path) -> None:
    """What ``edge.run.NightWriter`` reads from ``meta``: present, typed, within the files."""
    where = f"{path} meta"
    expect(meta, dict, where)
    expect(meta.get("config"), dict, f"{where} config")
    log = expect(meta.get("log"), dict, f"{where} log")
    for key in ("epochs", *LOG_FILES):
        count(log.get(key), f"{where} log.{key}")
    for key, name in LOG_FILES.items():
        file = path.parent / name
        size = file.stat().st_size if file.exists() else 0
        if log[key] > size:
            raise CheckpointError(
                f"{where} log.{key} = {log[key]} is past the end of {name} ({size} bytes)"
            )
    if "source_position" not in meta:
        raise CheckpointError(f"{where} has no source_position")
    if meta["source_position"] is not None:
        count(meta["source_position"], f"{where} source_position")


def _brief(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:160] if text else type(exc).__name__


def json_array(value: Any) -> np.ndarray:
    """``value`` as JSON text in a uint8 array (an npz member)."""
    return np.frombuffer(json.dumps(value, separators=(",", ":")).encode(), dtype=np.uint8)


def parse_json(a: np.ndarray, what: str) -> Any:
    """The JSON text held by a uint8 array (``json_array``); ``CheckpointError`` if it is not."""
    if a.dtype != np.uint8 or a.ndim != 1:
        raise CheckpointError(f"{what} is not JSON text (dtype {a.dtype}, shape {a.shape})")
    try:
        return json.loads(a.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CheckpointError(f"{what} is not valid JSON ({_brief(exc)})") from None


def pack(tree: Any, prefix: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A tree of dicts (str keys), lists, numbers, strings, None and arrays → its JSON (with
    each array replaced by ``{"$array": name}``) and the arrays by name (``prefix`` + n)."""
    arrays: dict[str, np.ndarray] = {}

    def walk(x: Any) -> Any:
        if isinstance(x, np.ndarray):
            name = f"{prefix}{len(arrays)}"
            arrays[name] = x
            return {ARRAY_TAG: name}
        if isinstance(x, Mapping):
            if not all(isinstance(k, str) for k in x):
                raise TypeError(f"pack: dict keys must be str, got {list(x)[:3]}")
            return {k: walk(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return [walk(v) for v in x]
        if isinstance(x, bool | int | float | str) or x is None:
            return x
        if isinstance(x, np.bool_ | np.integer | np.floating):
            return x.item()
        raise TypeError(f"pack: cannot store {type(x).__name__} as data")

    text = json_array(walk(tree))
    return text, arrays


def unpack(text: np.ndarray, arrays: Mapping[str, np.ndarray], prefix: str, what: str) -> Any:
    """``pack``'s tree back from its JSON and arrays; ``CheckpointError`` if malformed."""

    def walk(x: Any) -> Any:
        if isinstance(x, dict):
            if ARRAY_TAG in x:
                name = x[ARRAY_TAG]
                if len(x) != 1 or not isinstance(name, str) or not name.startswith(prefix):
                    raise CheckpointError(f"{what}: bad array reference {str(x)[:80]}")
                if name not in arrays:
                    raise CheckpointError(f"{what}: array {name!r} is missing")
                return arrays[name]
            return {k: walk(v) for k, v in x.items()}
        if isinstance(x, list):
            return [walk(v) for v in x]
        return x

    try:
        return walk(parse_json(text, what))
    except RecursionError:
        raise CheckpointError(f"{what}: nested too deeply") from None


# --- checks for restoring state from a checkpoint: each raises CheckpointError ---


def expect(value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    """``value`` if it is a ``kind`` (bool is not an int here), else ``CheckpointError``."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
    if ok and isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 1 << 63:
        raise CheckpointError(f"checkpoint {what}: {str(value)[:20]}… does not fit 64 bits")
    if not ok:
        names = "/".join(k.__name__ for k in kinds)
        raise CheckpointError(f"checkpoint {what}: expected {names}, got {type(value).__name__}")
    return value


def count(value: Any, what: str) -> int:
    """A non-negative int."""
    if expect(value, int, what) < 0:
        raise CheckpointError(f"checkpoint {what}: negative ({value})")
    return value


def counts(value: Any, keys: Any, what: str) -> dict[str, int]:
    """A dict of non-negative ints whose keys are among ``keys`` (None: any str)."""
    expect(value, dict, what)
    for k, v in value.items():
        if keys is not None and k not in keys:
            raise CheckpointError(f"checkpoint {what}: unknown key {k!r}")
        count(v, f"{what}[{k!r}]")
    return value


def float_array(value: Any, rows: int | None, what: str, ndim: int = 2) -> np.ndarray:
    """A float array of ``ndim`` dimensions (``rows`` first-axis length when given)."""
    if not isinstance(value, np.ndarray) or value.dtype.kind != "f" or value.ndim != ndim:
        shape = getattr(value, "shape", None)
        raise CheckpointError(
            f"checkpoint {what}: expected a {ndim}-d float array, got "
            f"{getattr(value, 'dtype', type(value).__name__)} {shape}"
        )
    if rows is not None and value.shape[0] != rows:
        raise CheckpointError(f"checkpoint {what}: {value.shape[0]} rows, expected {rows}")
    return value


def refuse(what: str, exc: BaseException) -> CheckpointError:
    """A ``CheckpointError`` for state that did not fit while being restored."""
    return CheckpointError(f"checkpoint {what} does not fit this pipeline ({_brief(exc)})")
