"""The bounded hand-over between a network thread (BLE, MQTT) and the engine."""

from __future__ import annotations

import queue


class FrameQueue:
    """At most ``max_frames`` frames wait; a frame offered to a full queue is dropped and
    counted (``stats["dropped_queue_full"]``), never blocking the network thread."""

    def __init__(self, max_frames: int, stats: dict) -> None:
        self._queue: queue.Queue = queue.Queue(max_frames)
        self.stats = stats
        stats.setdefault("received", 0)
        stats.setdefault("dropped_queue_full", 0)

    def offer(self, data: bytes) -> None:
        try:
            self._queue.put_nowait(data)
            self.stats["received"] += 1
        except queue.Full:
            self.stats["dropped_queue_full"] += 1

    def get(self, timeout: float) -> bytes | None:
        """The next frame, or None after ``timeout`` seconds without one."""
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def get_nowait_many(self, limit: int) -> list:
        """Up to ``limit`` frames that are waiting now, without blocking."""
        out = []
        try:
            for _ in range(limit):
                out.append(self._queue.get_nowait())
        except queue.Empty:
            pass
        return out

    def qsize(self) -> int:
        return self._queue.qsize()
