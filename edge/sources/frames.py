"""In-process frame lists: a recording played by the virtual device, as ``sim`` and ``replay``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np


@dataclass
class FrameList:
    """Wire frames in delivery order; ``position`` counts the frames handed out so far. With
    ``times`` (delivery time of each frame, s) and ``speed`` they are paced at speed × real
    time; without, handed out as fast as the engine takes them."""

    frames: list[bytes]
    description: str
    times: list[float] | None = None
    speed: float | None = None
    reference_stages: np.ndarray | None = None  # the record's own hypnogram, if it has one
    position: int = 0
    stats: dict = field(default_factory=dict)

    def seek(self, position: int) -> None:
        if not 0 <= position <= len(self.frames):
            raise ValueError(f"cannot resume at frame {position} of {len(self.frames)}")
        self.position = position

    @property
    def paced(self) -> bool:
        return self.times is not None and bool(self.speed)

    def batches(self, size: int = 4096) -> Iterator[list[bytes]]:
        """Unpaced: the frames in lists of up to ``size`` (a replay decodes a list at once);
        ``position`` moves past each list as it is handed out."""
        if self.paced:
            raise ValueError("a paced frame list is handed out frame by frame")
        while self.position < len(self.frames):
            batch = self.frames[self.position : self.position + size]
            self.position += len(batch)
            yield batch

    def __iter__(self) -> Iterator[bytes]:
        paced = self.paced
        if paced:
            start = self.times[self.position] if self.position < len(self.frames) else 0.0
            t0 = time.monotonic() - start / self.speed
        while self.position < len(self.frames):
            if paced:
                wait = t0 + self.times[self.position] / self.speed - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            data = self.frames[self.position]
            self.position += 1
            yield data

    def close(self) -> None:
        pass
