"""Checkpoints are data, never code: a crafted, tampered, truncated or garbage ``checkpoint.npz``
is refused by ``edge-run --resume`` with one line and exit status 2 (``CheckpointError``), its
payload never runs; random corruptions of a real checkpoint are refused or resume exactly."""

import io
import json
import pickle
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from edge import checkpoint
from edge.checkpoint import CheckpointError
from edge.cli import _config, _manifest, _push_every, _source, _stager, build_parser, main
from edge.devices import load_device
from edge.fleet import Fleet
from edge.run import run_night
from edge.session import Session
from tests.commands import run

PSG = load_device("psg")
ARGS = ["--source", "sim", "--duration", "300", "--speed", "max", "--plain"]
CK = "checkpoint.npz"


class Payload:
    """Unpickling this creates ``path``: the proof that a file ran code."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def parsed(out: Path):
    return build_parser().parse_args([*ARGS, "--out", str(out)])


def session(args) -> Session:
    stager, spec = _stager(_manifest(None, PSG.name), PSG, args)
    return Session(PSG, spec, stager, _push_every(args))


class Interrupted:
    """The sim source, stopped by Ctrl-C after ``batches`` batches of 64 frames."""

    def __init__(self, source, batches: int) -> None:
        self.source, self.left = source, batches
        self.paced, self.stats = False, source.stats

    def batches(self):
        for frames in self.source.batches(64):
            if not self.left:
                raise KeyboardInterrupt
            self.left -= 1
            yield frames

    @property
    def position(self) -> int:
        return self.source.position

    def close(self) -> None:
        self.source.close()


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    """(a folder holding a real mid-night checkpoint and its outputs, the clean night's lines)."""
    clean = tmp_path_factory.mktemp("clean")
    args = parsed(clean)
    run_night(_source(args, PSG), session(args), clean, _config(args), checkpoint_every=0)
    out = tmp_path_factory.mktemp("stopped")
    args = parsed(out)
    with pytest.raises(KeyboardInterrupt):
        run_night(Interrupted(_source(args, PSG), 10), session(args), out, _config(args), 2)
    assert (out / CK).exists() and (out / "epochs.jsonl").read_text()
    return out, (clean / "epochs.jsonl").read_bytes()


def copy_of(folder: Path, dest: Path) -> Path:
    for name in ("epochs.jsonl", "hypnogram.csv", CK):
        shutil.copy(folder / name, dest / name)
    return dest


def resume_cli(out: Path) -> tuple[int, list[str]]:
    """``edge-run --resume`` as a user runs it: exit status and stderr lines."""
    res = run("edge.cli", *ARGS, "--out", str(out), "--resume", timeout=300)
    return res.returncode, res.stderr.strip().splitlines()


def test_a_real_checkpoint_resumes_to_the_clean_night(night, tmp_path):
    folder, clean = night
    out = copy_of(folder, tmp_path)
    arrays, _ = checkpoint.load(out / CK)
    assert all(a.dtype.kind in "biuf" for a in arrays.values())  # data only, no pickle
    json.loads(arrays["bookkeeping"].tobytes())
    rc, err = resume_cli(out)
    assert rc == 0, err
    assert (out / "epochs.jsonl").read_bytes() == clean


def rewrite(path: Path, **changes) -> None:
    """The checkpoint at ``path`` with arrays replaced (None: removed), CRCs valid: a file
    written by someone who knows the format."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    for k, v in changes.items():
        if v is None:
            arrays.pop(k)
        else:
            arrays[k] = v
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.write_bytes(buf.getvalue())


def test_a_pickle_payload_is_refused_and_never_runs(night, tmp_path):
    marker = tmp_path / "pwned"
    pickle.loads(pickle.dumps(Payload(tmp_path / "proof")))  # the payload works when unpickled
    assert (tmp_path / "proof").exists()
    for i, attack in enumerate(
        [
            {"bookkeeping": np.array([Payload(marker)], dtype=object)},  # an object array
            {"meta": np.array([Payload(marker)], dtype=object)},
            # the old format's place for pickle: a uint8 array holding a pickle's bytes
            {"bookkeeping": np.frombuffer(pickle.dumps(Payload(marker)), np.uint8)},
        ]
    ):
        out = copy_of(night[0], Path(tempfile.mkdtemp(dir=tmp_path)))
        rewrite(out / CK, **attack)
        rc, err = resume_cli(out)
        assert rc == 2 and len(err) == 1, (i, err)
        assert err[0].startswith("edge-run: ") and "checkpoint" in err[0], err
        assert not marker.exists(), f"attack {i} ran code"


def hold_a_frame(book: dict, samples: str) -> dict:
    """``book`` with a frame held by its first stream's tracker, its samples in array
    ``samples``."""
    tracker = next(iter(book["receiver"]["trackers"].values()))
    frame = {"seq": 1, "t": 0, "samples": {"$array": samples}, "off": False, "bytes": 10}
    tracker["held"] = [[tracker["next"] + 1, frame]]
    return book


@pytest.mark.parametrize(
    "damage",
    [
        "garbage",
        "empty",
        "truncated",
        "no meta",
        "no bookkeeping",
        "bookkeeping not json",
        "bookkeeping floats",
        "strings",
        "meta past the log",
        "meta without position",
        "missing array",
        "wrong axes",
        "wrong stream",
        "negative counter",
        "huge number",
    ],
)
def test_a_damaged_checkpoint_is_refused_with_one_line(night, tmp_path, damage, capsys):
    out = copy_of(night[0], tmp_path)
    path = out / CK
    data = path.read_bytes()
    with np.load(path, allow_pickle=False) as z:
        book = json.loads(z["bookkeeping"].tobytes())
        meta = json.loads(z["meta"].tobytes())

    def text(value) -> np.ndarray:
        return np.frombuffer(json.dumps(value).encode(), np.uint8)

    match damage:
        case "garbage":
            path.write_bytes(b"not a zip at all" * 100)
        case "empty":
            path.write_bytes(b"")
        case "truncated":
            path.write_bytes(data[: len(data) // 2])
        case "no meta":
            rewrite(path, meta=None)
        case "no bookkeeping":
            rewrite(path, bookkeeping=None)
        case "bookkeeping not json":
            rewrite(path, bookkeeping=np.frombuffer(b'{"receiver": [1, 2', np.uint8))
        case "bookkeeping floats":
            rewrite(path, bookkeeping=np.zeros(8))
        case "strings":
            rewrite(path, **{"pipe.extra": np.array(["x"])})
        case "meta past the log":
            meta["log"]["jsonl"] = 10**9  # os.truncate would grow the file by a gigabyte
            rewrite(path, meta=text(meta))
        case "meta without position":
            del meta["source_position"]
            rewrite(path, meta=text(meta))
        case "missing array":
            rewrite(path, bookkeeping=text(hold_a_frame(book, "book.99")))
        case "wrong axes":
            book = hold_a_frame(book, "book.99")
            rewrite(path, bookkeeping=text(book), **{"book.99": np.zeros((7, 3))})
        case "wrong stream":
            book["assembler"]["next"]["no_such_stream"] = 3
            rewrite(path, bookkeeping=text(book))
        case "negative counter":
            book["next_index"] = -4
            rewrite(path, bookkeeping=text(book))
        case "huge number":
            book["assembler"]["anchor_ns"] = 10**40
            rewrite(path, bookkeeping=text(book))
    size = (out / "epochs.jsonl").stat().st_size
    assert main([*ARGS, "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("edge-run: ") and "checkpoint" in err[0], err
    assert (out / "epochs.jsonl").stat().st_size <= size  # never grown


def test_damage_is_refused_by_the_command_too(night, tmp_path):
    """The same refusal from a fresh ``edge-run`` process: exit 2, one line, no traceback."""
    for name, damage in (("garbage", b"\x00PK\x03\x04" * 50), ("cut", None)):
        out = copy_of(night[0], Path(tempfile.mkdtemp(dir=tmp_path)))
        data = (out / CK).read_bytes()
        (out / CK).write_bytes(damage if damage is not None else data[: len(data) - 100])
        rc, err = resume_cli(out)
        assert rc == 2 and len(err) == 1 and "checkpoint" in err[0], (name, err)
        assert "Traceback" not in "\n".join(err)


@settings(max_examples=25)
@given(data=st.data())
def test_random_corruption_is_refused_or_resumes_exactly(night, data):
    folder, clean = night
    raw = (folder / CK).read_bytes()
    kind = data.draw(st.sampled_from(["flip", "overwrite", "truncate"]), "kind")
    b = bytearray(raw)
    if kind == "truncate":
        b = b[: data.draw(st.integers(0, len(raw) - 1), "length")]
    else:
        at = data.draw(st.integers(0, len(raw) - 1), "at")
        if kind == "flip":
            b[at] ^= 1 << data.draw(st.integers(0, 7), "bit")
        else:
            chunk = data.draw(st.binary(min_size=1, max_size=64), "bytes")
            b[at : at + len(chunk)] = chunk
    with tempfile.TemporaryDirectory() as tmp:
        out = copy_of(folder, Path(tmp))
        (out / CK).write_bytes(bytes(b))
        args = parsed(out)
        args.resume = True
        try:
            run_night(_source(args, PSG), session(args), out, _config(args), 2, resume=True)
        except CheckpointError:
            event("refused")
            return
        event("resumed")
        assert (out / "epochs.jsonl").read_bytes() == clean  # resumed exactly


def test_a_fleet_refuses_one_bad_checkpoint_and_runs_the_other_devices(night, tmp_path):
    """In one engine for many devices, a device whose checkpoint is refused is left out (its
    frames ignored and counted); every other device resumes."""
    folder, _ = night
    args = parsed(tmp_path)
    for d in ("good", "bad"):
        (tmp_path / d).mkdir()
        copy_of(folder, tmp_path / d)
    (tmp_path / "bad" / CK).write_bytes(b"garbage")
    fleet = Fleet(lambda bank, d: session(args), None, tmp_path, _config(args), 2, resume=True)
    frames = _source(args, PSG).frames
    for data in frames[:50]:
        fleet.feed("bad", data)
        fleet.feed("good", data)
    assert fleet.stats.refused_checkpoints == 1
    assert set(fleet.devices) == {"good"}
    fleet.close()
    assert fleet.stats.finished["good"].resumed_at > 0
    assert (tmp_path / "bad" / CK).read_bytes() == b"garbage"  # left for a person to look at
