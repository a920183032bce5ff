"""Feature pipelines built from device descriptors, each with a batch reference.

- ``FramePipeline``: raw streams → one feature vector per frame (ANNE → 140 features per second
  for the Mamba). Each descriptor slot is a ``Chain`` of operators; a ``FrameAssembler`` aligns
  slots by frame index and emits (..., width, frames).
- ``EpochPipeline``: raw streams → [channels, samples] per 30-s epoch on the AASM grid (PSG →
  [4, 3000] for ULW-SleepNet).

Chunks are shaped (..., axes, n): leading axes are independent devices processed together, then
the stream's axes (1 for ECG, 3 for ACC). Timestamped streams take ``times`` (seconds from the
session anchor); for a regular stream feeding a 'grid' step they are derived from the sample
index, never accumulated.

A stream whose chain starts with a ``bridge`` step has its short gaps filled before any other
operator (``edge.ops.bridge``); the pipelines report, per frame or epoch and per stream, the
fraction of samples that were bridged (``last_bridged`` / ``SampleEpochs.bridged``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import scipy.signal as sps

from edge.devices.profile import EpochInputSpec, FrameInputSpec, StreamSpec
from edge.ops.base import Snapshot
from edge.ops.bridge import GapBridge
from edge.ops.chain import Chain, FrameAssembler
from edge.ops.epochs import EpochBuffer, SampleEpochs, reference_epochs
from edge.ops.gaps import interpolate_gaps
from edge.ops.grid import BRIDGED, GridResampler
from edge.ops.steps import reference_chain


def _check_axes(stream: StreamSpec, chunk: np.ndarray) -> np.ndarray:
    x = np.asarray(chunk)
    if x.ndim < 2 or x.shape[-2] != stream.n_axes:
        raise ValueError(
            f"stream {stream.name!r}: chunk must be shaped (..., {stream.n_axes} axes, samples), "
            f"got {x.shape}"
        )
    return x


def _flatten_frames(out: np.ndarray, is_stft: bool) -> np.ndarray:
    """(..., axes, bins, frames) → (..., axes·bins, frames); grid output is already (..., 1, n)."""
    if is_stft:
        return out.reshape(*out.shape[:-3], out.shape[-3] * out.shape[-2], out.shape[-1])
    return out


class BridgeTally:
    """Bridged-sample counts per output bin (a feature frame or an epoch) of one stream.

    Sample ``i`` of the stream (counted from the session anchor) falls in bin
    ``i // per_bin``; counts are held until their bin is taken, as a fraction of ``per_bin``.
    """

    def __init__(self, per_bin: int) -> None:
        self.per_bin = int(per_bin)
        self._first = 0  # bin of column 0 of _counts
        self._counts: np.ndarray | None = None  # (..., bins)

    def add(self, mask: np.ndarray, first_sample: int) -> None:
        """``mask`` (..., m): which of samples first_sample.. were bridged."""
        if not mask.any():
            return
        last = (first_sample + mask.shape[-1] - 1) // self.per_bin
        b0 = first_sample // self.per_bin
        bins = (first_sample + np.arange(mask.shape[-1])) // self.per_bin
        starts = np.flatnonzero(np.diff(bins, prepend=bins[0] - 1))  # each bin's first sample
        counts = np.add.reduceat(mask.astype(np.float64), starts, axis=-1)  # (..., bins)
        self._grow(mask.shape[:-1], last + 1)
        self._counts[..., b0 - self._first : last + 1 - self._first] += counts

    def _grow(self, lead: tuple[int, ...], end_bin: int) -> None:
        if self._counts is None:
            self._counts = np.zeros((*lead, 0))
        need = end_bin - self._first - self._counts.shape[-1]
        if need > 0:
            self._counts = np.concatenate((self._counts, np.zeros((*lead, need))), axis=-1)

    def take(self, first_bin: int, n: int, lead: tuple[int, ...]) -> np.ndarray:
        """Fractions (..., n) of bins first_bin.. ; every bin before first_bin + n is dropped."""
        out = np.zeros((*lead, n))
        if self._counts is not None and self._counts.shape[-1]:
            a, b = first_bin - self._first, first_bin + n - self._first
            have = self._counts[..., max(a, 0) : max(b, 0)]
            out[..., max(a, 0) - a : max(a, 0) - a + have.shape[-1]] = have / self.per_bin
            self._counts = self._counts[..., max(b, 0) :]
            self._first = max(self._first, first_bin + n)
        else:
            self._first = max(self._first, first_bin + n)
        return out

    def snapshot(self) -> Snapshot:
        snap: Snapshot = {"first": np.array(self._first, dtype=np.int64)}
        if self._counts is not None:
            snap["counts"] = self._counts.copy()
        return snap

    def restore(self, snapshot: Snapshot) -> None:
        self._first = int(snapshot["first"])
        counts = snapshot.get("counts")
        self._counts = None if counts is None else np.array(counts, dtype=np.float64)


def _bridge_of(chain: Chain | None) -> GapBridge | GridResampler | None:
    """The chain's first operator when it bridges gaps (a gap bridge, or a grid step, which
    interpolates across a missing sample)."""
    if chain is not None and isinstance(chain.ops[0], GapBridge | GridResampler):
        return chain.ops[0]
    return None


def _tally_bridged(tally: BridgeTally, op: GapBridge | GridResampler, offset: int = 0) -> None:
    """Count what ``op`` bridged in its last output (any axis of a sample counts)."""
    if isinstance(op, GridResampler):
        mask = op.last_flags == BRIDGED  # (n,): one flag per grid point, all rows
    elif not op.bridged_any:
        return  # a clean output (the common case), or nothing pushed yet: nothing to count
    else:
        mask = op.last_bridged.any(axis=-2)  # (..., axes, m) -> (..., m)
    tally.add(mask, offset + op.n_out - mask.shape[-1])


class FramePipeline:
    """Streaming per-frame features for one model input spec (see module docstring)."""

    def __init__(self, spec: FrameInputSpec) -> None:
        self.spec = spec
        self.streams = {f.stream.name: f.stream for f in spec.features}
        self._chains = [Chain([s.build() for s in f.steps]) for f in spec.features]
        slots = [f"{i}:{f.stream.name}" for i, f in enumerate(spec.features)]
        self._assembler = FrameAssembler(
            [(slot, f.width) for slot, f in zip(slots, spec.features, strict=True)]
        )
        # per stream: (slot, chain, takes timestamps, ends in an STFT)
        self._routes: dict[str, list[tuple[str, Chain, bool, bool]]] = {n: [] for n in self.streams}
        for slot, f, chain in zip(slots, spec.features, self._chains, strict=True):
            route = (slot, chain, f.steps[0].op == "grid", f.steps[-1].op == "stft")
            self._routes[f.stream.name].append(route)
        self._n_seen = dict.fromkeys(self.streams, 0)
        self._empties: dict[tuple[int, ...], np.ndarray] = {}
        # bridged samples per frame, for streams whose chain starts with a bridge
        # (the first bridged slot of a stream counts for it)
        self._tallies: dict[str, BridgeTally] = {}
        self._tally_slot: dict[str, str] = {}
        for slot, f, chain in zip(slots, spec.features, self._chains, strict=True):
            if _bridge_of(chain) is not None and f.stream.name not in self._tallies:
                rate = f.steps[0].rate_out  # the stream's rate, or the grid's
                self._tallies[f.stream.name] = BridgeTally(round(rate / spec.frame_hz))
                self._tally_slot[f.stream.name] = slot
        self.last_bridged: dict[
            str, np.ndarray
        ] = {}  # per stream: (..., frames) of the last output

    @property
    def width(self) -> int:
        return self.spec.width

    def push(self, stream: str, chunk: np.ndarray, times: np.ndarray | None = None) -> np.ndarray:
        """Feed one stream's chunk; return the feature frames (..., width, n) now complete."""
        routes = self._routes.get(stream)
        if routes is None:
            raise KeyError(f"unknown stream {stream!r}; this input uses {sorted(self.streams)}")
        spec = self.streams[stream]
        x = _check_axes(spec, chunk)
        n = x.shape[-1]
        for slot, chain, timed, is_stft in routes:
            if timed:
                if times is None:
                    if spec.timing == "timestamped":
                        raise ValueError(f"stream {stream!r} is timestamped: pass times=")
                    times = (self._n_seen[stream] + np.arange(n)) / spec.rate_hz
                out = chain.push((times, x))
            else:
                out = chain.push(x)
            if self._tally_slot.get(stream) == slot:
                _tally_bridged(self._tallies[stream], _bridge_of(chain))
            self._assembler.add(slot, _flatten_frames(out, is_stft))
        self._n_seen[stream] += n
        ready = self._assembler.ready()
        return self._with_bridged(ready if ready is not None else self._empty(x.shape[:-2]))

    def _with_bridged(self, frames: np.ndarray) -> np.ndarray:
        """Set ``last_bridged`` for ``frames`` (the frames just assembled), then return them."""
        n = frames.shape[-1]
        if not n:
            self.last_bridged = {}
            return frames
        first = self._assembler.n_emitted - n
        lead = frames.shape[:-2]
        self.last_bridged = {s: t.take(first, n, lead) for s, t in self._tallies.items()}
        return frames

    def _empty(self, lead: tuple[int, ...]) -> np.ndarray:
        """A shared read-only (..., width, 0) array: most pushes complete no frame."""
        empty = self._empties.get(lead)
        if empty is None:
            empty = self._empties[lead] = np.zeros((*lead, self.width, 0))
            empty.flags.writeable = False
        return empty

    def flush(self) -> np.ndarray:
        """End of stream: drain every chain and pad slots that ended early with NaN."""
        for stream, routes in self._routes.items():
            for slot, chain, _, is_stft in routes:
                out = chain.flush()
                if self._tally_slot.get(stream) == slot:
                    _tally_bridged(self._tallies[stream], _bridge_of(chain))
                if out is not None and out.ndim >= (3 if is_stft else 2):  # else never fed
                    self._assembler.add(slot, _flatten_frames(out, is_stft))
        out = self._assembler.flush()
        return self._with_bridged(out if out is not None else np.zeros((self.width, 0)))

    def snapshot(self) -> Snapshot:
        snap: Snapshot = {f"asm.{k}": v for k, v in self._assembler.snapshot().items()}
        for routes in self._routes.values():
            for slot, chain, _, _ in routes:
                snap.update({f"{slot}.{k}": v for k, v in chain.snapshot().items()})
        snap.update({f"seen.{k}": np.array(v, dtype=np.int64) for k, v in self._n_seen.items()})
        for name, tally in self._tallies.items():
            snap.update({f"bridged.{name}.{k}": v for k, v in tally.snapshot().items()})
        return snap

    def restore(self, snapshot: Snapshot) -> None:
        self._assembler.restore({k[4:]: v for k, v in snapshot.items() if k.startswith("asm.")})
        for routes in self._routes.values():
            for slot, chain, _, _ in routes:
                p = f"{slot}."
                chain.restore({k[len(p) :]: v for k, v in snapshot.items() if k.startswith(p)})
        for k in self._n_seen:
            self._n_seen[k] = int(snapshot[f"seen.{k}"])
        for name, tally in self._tallies.items():
            p = f"bridged.{name}."
            tally.restore({k[len(p) :]: v for k, v in snapshot.items() if k.startswith(p)})


def reference_frame_features(
    spec: FrameInputSpec,
    recording: Mapping[str, np.ndarray],
    times: Mapping[str, np.ndarray] | None = None,
) -> np.ndarray:
    """Batch reference: each slot's scipy/numpy chain over the whole recording, NaN-padded to
    the longest slot, concatenated in descriptor order → (..., width, frames)."""
    times = times or {}
    outs = []
    for feat in spec.features:
        x = np.asarray(recording[feat.stream.name], dtype=np.float64)
        if feat.steps[0].op == "grid":
            t = times.get(feat.stream.name)
            if t is None:
                t = np.arange(x.shape[-1]) / feat.stream.rate_hz
            out = reference_chain(list(feat.steps), (t, x))
        else:
            out = reference_chain(list(feat.steps), x)
        outs.append(_flatten_frames(out, feat.steps[-1].op == "stft"))
    n = max(o.shape[-1] for o in outs)
    padded = []
    for o in outs:
        fill = np.full((*o.shape[:-1], n - o.shape[-1]), np.nan)
        padded.append(np.concatenate((o, fill), axis=-1))
    return np.concatenate(padded, axis=-2)


def _epoch_fft_resample(data: np.ndarray, n_out: int) -> np.ndarray:
    """Per-epoch FFT resampling (the ULW-SleepNet reference's treatment of the EMG envelope).

    An FFT spreads one NaN over the whole epoch, so gaps inside an epoch are interpolated
    linearly first (the epoch's ``nan_fraction`` still reports them); an epoch with no sample
    at all stays NaN."""
    if data.shape[0] == 0 or data.shape[-1] == n_out:
        return data.reshape(*data.shape[:-1], n_out) if data.shape[0] == 0 else data
    return sps.resample(interpolate_gaps(data), n_out, axis=-1)


class EpochPipeline:
    """Streaming [channels, samples] epochs for one per-epoch model input spec."""

    def __init__(self, spec: EpochInputSpec, start_s: float = 0.0) -> None:
        self.spec = spec
        self.streams = {c.stream.name: c.stream for c in spec.channels}
        self._chains = [
            Chain([s.build() for s in c.steps]) if c.steps else None for c in spec.channels
        ]
        self._buffers = []
        for c in spec.channels:
            rate = c.steps[-1].rate_out if c.steps else c.stream.rate_hz
            length = int(round(rate * spec.epoch_s))
            start = int(round(start_s * rate))
            self._buffers.append(EpochBuffer(length, start))
        self._pending: list[list[SampleEpochs]] = [[] for _ in spec.channels]
        self._lead: tuple[int, ...] = ()  # leading (device) axes, from the first push
        # bridged samples per epoch (counted at the stream's own rate, before its steps)
        self._tallies: list[BridgeTally | None] = []
        self._offsets: list[int] = []
        for c, chain in zip(spec.channels, self._chains, strict=True):
            bridged = _bridge_of(chain) is not None
            self._tallies.append(
                BridgeTally(round(c.stream.rate_hz * spec.epoch_s)) if bridged else None
            )
            self._offsets.append(int(round(start_s * c.stream.rate_hz)))

    def _collect(self, i: int, ep: SampleEpochs) -> None:
        c = self.spec.channels[i]
        if c.epoch_resample == "fft" and len(ep):
            ep = SampleEpochs(
                ep.index,
                _epoch_fft_resample(ep.data, self.spec.epoch_len),
                ep.partial,
                ep.nan_fraction,
            )
        if len(ep):
            self._pending[i].append(ep)

    def push(self, stream: str, chunk: np.ndarray) -> SampleEpochs:
        """Feed one stream's chunk; return epochs that every channel has completed."""
        if stream not in self.streams:
            raise KeyError(f"unknown stream {stream!r}; this input uses {sorted(self.streams)}")
        x = _check_axes(self.streams[stream], chunk)
        self._lead = x.shape[:-2]
        for i, c in enumerate(self.spec.channels):
            if c.stream.name == stream:
                y = self._chains[i].push(x) if self._chains[i] is not None else x
                self._count_bridged(i)
                self._collect(i, self._buffers[i].push(y))
        return self._emit()

    def _count_bridged(self, i: int) -> None:
        if self._tallies[i] is not None:
            _tally_bridged(self._tallies[i], _bridge_of(self._chains[i]), self._offsets[i])

    def _emit(self, final: bool = False) -> SampleEpochs:
        counts = [sum(len(e) for e in p) for p in self._pending]
        n = max(counts) if final else min(counts)
        merged = [self._merge(i, n) for i in range(len(self._pending))]
        lead = next((m.data.shape[1:-2] for m in merged if m.data.size), ())
        datas, fracs = [], []
        for m in merged:
            if m.data.shape[0] < n:  # a channel that ended early: NaN, never zeros
                miss = n - m.data.shape[0]
                datas.append(
                    np.concatenate((m.data, np.full((miss, *lead, 1, self.spec.epoch_len), np.nan)))
                )
                fracs.append(np.concatenate((m.nan_fraction, np.ones((miss, *lead, 1)))))
            else:
                datas.append(m.data)
                fracs.append(m.nan_fraction)
        longest = max(merged, key=lambda m: len(m))
        index = longest.index[:n]
        partial = np.zeros(n, dtype=bool)
        for m in merged:
            partial[: len(m)] |= m.partial[:n]
        bridged = np.zeros((n, *lead, len(merged)))
        if n:
            for i, tally in enumerate(self._tallies):
                if tally is not None:
                    bridged[..., i] = np.moveaxis(tally.take(int(index[0]), n, lead), -1, 0)
        return SampleEpochs(
            index,
            np.concatenate(datas, axis=-2),
            partial,
            np.concatenate(fracs, axis=-1),
            bridged,
        )

    def _merge(self, i: int, n: int) -> SampleEpochs:
        parts = self._pending[i]
        if not parts:
            lead = self._lead
            return SampleEpochs(
                np.zeros(0, np.int64),
                np.zeros((0, *lead, 1, self.spec.epoch_len)),
                np.zeros(0, bool),
                np.zeros((0, *lead, 1)),
            )
        idx = np.concatenate([p.index for p in parts])
        data = np.concatenate([p.data for p in parts])
        partial = np.concatenate([p.partial for p in parts])
        frac = np.concatenate([p.nan_fraction for p in parts])
        rest = SampleEpochs(idx[n:], data[n:], partial[n:], frac[n:])
        self._pending[i] = [rest] if len(rest) else []
        return SampleEpochs(idx[:n], data[:n], partial[:n], frac[:n])

    def flush(self) -> SampleEpochs:
        for i, buf in enumerate(self._buffers):
            if self._chains[i] is not None:
                tail = self._chains[i].flush()
                self._count_bridged(i)
                if tail is not None and tail.ndim >= 2 and tail.shape[-1]:
                    self._collect(i, buf.push(tail))
            self._collect(i, buf.flush())
        return self._emit(final=True)

    def snapshot(self) -> Snapshot:
        snap: Snapshot = {}
        for i, (chain, buf) in enumerate(zip(self._chains, self._buffers, strict=True)):
            if chain is not None:
                snap.update({f"{i}.chain.{k}": v for k, v in chain.snapshot().items()})
            snap.update({f"{i}.buf.{k}": v for k, v in buf.snapshot().items()})
            if self._tallies[i] is not None:
                snap.update({f"{i}.bridged.{k}": v for k, v in self._tallies[i].snapshot().items()})
            if self._pending[i]:
                m = self._merge(i, sum(len(e) for e in self._pending[i]))
                self._pending[i] = [m]
                snap.update(
                    {
                        f"{i}.pending.index": m.index,
                        f"{i}.pending.data": m.data,
                        f"{i}.pending.partial": m.partial,
                        f"{i}.pending.nan_fraction": m.nan_fraction,
                    }
                )
        return snap

    def restore(self, snapshot: Snapshot) -> None:
        for i, (chain, buf) in enumerate(zip(self._chains, self._buffers, strict=True)):

            def sub(prefix: str) -> Snapshot:
                return {k[len(prefix) :]: v for k, v in snapshot.items() if k.startswith(prefix)}

            if chain is not None:
                chain.restore(sub(f"{i}.chain."))
            buf.restore(sub(f"{i}.buf."))
            if self._tallies[i] is not None:
                self._tallies[i].restore(sub(f"{i}.bridged."))
            pend = sub(f"{i}.pending.")
            self._pending[i] = (
                [SampleEpochs(pend["index"], pend["data"], pend["partial"], pend["nan_fraction"])]
                if pend
                else []
            )


def reference_epoch_features(
    spec: EpochInputSpec, recording: Mapping[str, np.ndarray], start_s: float = 0.0
) -> np.ndarray:
    """Batch reference: (epochs, ..., channels, samples), NaN where a channel has no data."""
    outs = []
    for c in spec.channels:
        x = np.asarray(recording[c.stream.name], dtype=np.float64)
        y = reference_chain(list(c.steps), x) if c.steps else x
        rate = c.steps[-1].rate_out if c.steps else c.stream.rate_hz
        ep = reference_epochs(y, int(round(rate * spec.epoch_s)), int(round(start_s * rate)))
        if c.epoch_resample == "fft":
            ep = _epoch_fft_resample(ep, spec.epoch_len)
        outs.append(ep)
    n = max(o.shape[0] for o in outs)
    outs = [np.concatenate((o, np.full((n - o.shape[0], *o.shape[1:]), np.nan))) for o in outs]
    return np.concatenate(outs, axis=-2)
