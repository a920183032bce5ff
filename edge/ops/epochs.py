"""30-s epochs on the AASM grid: sample buffers for per-epoch models, logit means for step models.

Epoch k covers absolute sample indices [k·L, (k+1)·L) counted from the session anchor, so a
stream that starts late (``start_index`` > 0) lands on the same grid as every other stream; a
partly covered epoch is padded with NaN and flagged ``partial``. Outputs put the epoch axis
first, ready to batch into a model: (epochs, ..., L) for samples, (epochs, ..., K) for logits.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from edge.ops.base import Snapshot, as_float_chunk, check_finished

UNSCORED = -1


@dataclass(frozen=True)
class SampleEpochs:
    """Completed sample epochs: ``data`` (E, ..., L); ``nan_fraction`` (E, ...) per channel;
    ``bridged`` (E, ...) the fraction of each channel's samples filled by a gap bridge."""

    index: np.ndarray
    data: np.ndarray
    partial: np.ndarray
    nan_fraction: np.ndarray
    bridged: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.index.size)


@dataclass(frozen=True)
class StagedEpochs:
    """Per-epoch mean logits (E, ..., K), stage codes (E, ...) with -1 = unscored."""

    index: np.ndarray
    logits: np.ndarray
    stage: np.ndarray
    valid_fraction: np.ndarray
    partial: np.ndarray

    def __len__(self) -> int:
        return int(self.index.size)


def _check_index(start_index: int) -> int:
    if int(start_index) != start_index or start_index < 0:
        raise ValueError(f"start_index must be a non-negative integer, got {start_index}")
    return int(start_index)


class EpochBuffer:
    """Collects samples shaped (..., time) into epochs of ``epoch_len`` samples."""

    def __init__(self, epoch_len: int = 3000, start_index: int = 0) -> None:
        if epoch_len < 1:
            raise ValueError(f"epoch_len must be >= 1, got {epoch_len}")
        self.epoch_len = int(epoch_len)
        self.start_index = _check_index(start_index)
        self._lead: tuple[int, ...] | None = None
        self._buf: np.ndarray | None = None  # samples of the open epoch
        self._epoch = self.start_index // self.epoch_len  # index of the open epoch
        self._open_partial = self.start_index % self.epoch_len != 0
        self._finished = False

    def push(self, chunk: np.ndarray) -> SampleEpochs:
        check_finished(self._finished, "EpochBuffer")
        x = as_float_chunk(chunk, self._lead, "EpochBuffer")
        if self._lead is None:
            self._lead = x.shape[:-1]
            pad = self.start_index % self.epoch_len
            self._buf = np.full((*self._lead, pad), np.nan)
        buf = np.concatenate((self._buf, x), axis=-1)
        n_done = buf.shape[-1] // self.epoch_len
        out = self._package(buf[..., : n_done * self.epoch_len], n_done)
        self._buf = buf[..., n_done * self.epoch_len :].copy()
        if n_done:
            self._open_partial = False
        return out

    def _package(self, flat: np.ndarray, n: int, partial_last: bool = False) -> SampleEpochs:
        lead = self._lead or ()
        data = np.moveaxis(flat.reshape(*lead, n, self.epoch_len), -2, 0)
        partial = np.zeros(n, dtype=bool)
        if n:
            partial[0] = self._open_partial
            partial[-1] |= partial_last
        index = np.arange(self._epoch, self._epoch + n, dtype=np.int64)
        self._epoch += n
        return SampleEpochs(index, data, partial, np.isnan(data).mean(axis=-1))

    def flush(self) -> SampleEpochs:
        """Emit the open epoch padded with NaN (flagged partial), if it holds any real sample."""
        check_finished(self._finished, "EpochBuffer")
        self._finished = True
        lead = self._lead or ()
        first_open = self._epoch == self.start_index // self.epoch_len
        front = self.start_index % self.epoch_len if first_open else 0
        if self._buf is None or self._buf.shape[-1] <= front:
            return self._package(np.zeros((*lead, 0)), 0)
        fill = self.epoch_len - self._buf.shape[-1]
        flat = np.concatenate((self._buf, np.full((*lead, fill), np.nan)), axis=-1)
        return self._package(flat, 1, partial_last=True)

    def snapshot(self) -> Snapshot:
        snap: Snapshot = {
            "epoch": np.array(self._epoch, dtype=np.int64),
            "open_partial": np.array(self._open_partial),
            "started": np.array(self._buf is not None),
        }
        if self._buf is not None:
            snap["buf"] = self._buf.copy()
        return snap

    def restore(self, snapshot: Snapshot) -> None:
        self._epoch = int(snapshot["epoch"])
        self._open_partial = bool(snapshot["open_partial"])
        if bool(snapshot["started"]):
            self._buf = np.asarray(snapshot["buf"], dtype=np.float64).copy()
            self._lead = self._buf.shape[:-1]
        else:
            self._buf, self._lead = None, None


class EpochAggregator:
    """Per-step logits (..., steps, K) → per-epoch mean logits and argmax stage.

    Steps whose logits are NaN (missing input) are left out of the mean; an epoch with fewer than
    ``min_valid`` of its steps valid is unscored (stage -1). Time is axis -2 here because the last
    axis holds the classes.
    """

    def __init__(self, steps_per_epoch: int = 30, start_index: int = 0, min_valid: float = 0.5):
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        if not 0 < min_valid <= 1:
            raise ValueError(f"min_valid must be in (0, 1], got {min_valid}")
        self.steps = int(steps_per_epoch)
        self.min_valid = float(min_valid)
        self._buffer = EpochBuffer(self.steps, start_index)

    def _stage(self, ep: SampleEpochs) -> StagedEpochs:
        # ep.data: (E, ..., K, steps) after the swap done in push
        logits_steps = ep.data
        valid = np.isfinite(logits_steps).all(axis=-2)  # (E, ..., steps)
        frac = valid.mean(axis=-1) if logits_steps.shape[-1] else np.zeros(valid.shape[:-1])
        with np.errstate(invalid="ignore"):
            masked = np.where(valid[..., None, :], logits_steps, 0.0)
            mean = masked.sum(axis=-1) / np.maximum(valid.sum(axis=-1), 1)[..., None]
        scored = frac >= self.min_valid
        mean = np.where(scored[..., None], mean, np.nan)
        if mean.shape[-1] == 0:  # flushed without a push: no epochs, no classes known
            stage = np.full(mean.shape[:-1], UNSCORED)
        else:
            stage = np.where(
                scored, np.argmax(np.where(scored[..., None], mean, 0.0), axis=-1), UNSCORED
            )
        return StagedEpochs(ep.index, mean, stage.astype(np.int64), frac, ep.partial)

    def push(self, logits: np.ndarray) -> StagedEpochs:
        x = np.asarray(logits)
        if x.ndim < 2:
            raise ValueError(f"EpochAggregator: logits must be (..., steps, classes): {x.shape}")
        return self._stage(self._buffer.push(np.swapaxes(x, -1, -2)))

    def flush(self) -> StagedEpochs:
        return self._stage(self._buffer.flush())

    def snapshot(self) -> Snapshot:
        return self._buffer.snapshot()

    def restore(self, snapshot: Snapshot) -> None:
        self._buffer.restore(snapshot)


def reference_epochs(x: np.ndarray, epoch_len: int, start_index: int = 0) -> np.ndarray:
    """Batch reference for ``EpochBuffer``: NaN-pad to the grid, reshape, epochs first."""
    x = np.asarray(x, dtype=np.float64)
    front = start_index % epoch_len
    total = front + x.shape[-1]
    n = -(-total // epoch_len)
    if x.shape[-1] == 0:
        n = 0
    padded = np.full((*x.shape[:-1], n * epoch_len), np.nan)
    padded[..., front : front + x.shape[-1]] = x
    return np.moveaxis(padded.reshape(*x.shape[:-1], n, epoch_len), -2, 0)


def reference_aggregate(
    logits: np.ndarray, steps_per_epoch: int = 30, start_index: int = 0, min_valid: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Batch reference for ``EpochAggregator``: (mean logits (E, ..., K), stages (E, ...))."""
    ep = reference_epochs(
        np.swapaxes(np.asarray(logits, dtype=np.float64), -1, -2), steps_per_epoch, start_index
    )  # (E, ..., K, steps)
    valid = np.isfinite(ep).all(axis=-2)
    frac = valid.mean(axis=-1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN epochs are expected
        mean = np.nanmean(np.where(valid[..., None, :], ep, np.nan), axis=-1)
    scored = frac >= min_valid
    mean = np.where(scored[..., None], mean, np.nan)
    stage = np.where(scored, np.argmax(np.where(scored[..., None], mean, 0.0), axis=-1), -1)
    return mean, stage
