"""One live device's frames, held until its next epoch can be staged, then handed over at once.

A live engine owes a device one thing per 30 s: the epoch's stage, soon after the epoch's last
sample. Decoding and pushing each frame as it arrives (~18 a second per ANNE device) costs a
few numpy calls per frame and per push; the same frames handed over in one batch go through
the vectorised replay path (``Session.feed_many``) at a fraction of the cost, with the same
output (chunking never changes what a session computes). So a ``FrameHold`` keeps a device's
frames until every stream it has heard has reached the epoch's end plus the pipeline's lead
(``edge.pipeline_lead``), read from each frame's 14-byte header, or until they span ``hold_s``
of device time (bounded memory and bounded delay when a stream falls silent).
"""

from __future__ import annotations

from edge.devices.codec import HEADER, HEADER_SIZE

RETRY_S = 0.25  # a release that did not complete its epoch: try again this much later
DEFAULT_HOLD_S = 40.0  # at most this much device time held per device (edge-run --hold)


class FrameHold:
    """``rates`` maps the stream codes the pipeline uses to their sample rates (Hz)."""

    def __init__(self, rates: dict[int, float], hold_s: float = DEFAULT_HOLD_S) -> None:
        self.rates, self.hold_ns = rates, int(hold_s * 1e9)
        self.frames: list[bytes] = []
        self._reached: dict[int, int] = {}  # stream code → end (device ns) of its latest frame
        self._first_ns: int | None = None  # start of the oldest frame held
        self._last_ns = 0
        self._released_for = 0  # the due point of the last release made for one
        self._retry_ns = 0
        self._stepped = True  # the owner has stepped the model since that release

    def add(self, data: bytes, due_ns: int | None) -> bool:
        """Hold one frame; True when the held frames should be handed over now: ``due_ns`` (the
        device time the next epoch needs every stream to reach; None: hand over at once) is
        reached, or they span ``hold_s``. A frame without a readable header just waits."""
        self.frames.append(data)
        if due_ns is None or self.hold_ns <= 0:
            return True
        if len(data) < HEADER_SIZE:
            return False
        code, _, _, start_ns, n, _ = HEADER.unpack_from(data)
        rate = self.rates.get(code)
        if rate is None or n == 0:
            return False
        end_ns = start_ns + int(n * 1e9 / rate)
        if end_ns > self._reached.get(code, 0):
            self._reached[code] = end_ns
        if self._first_ns is None or start_ns < self._first_ns:
            self._first_ns = start_ns
        self._last_ns = max(self._last_ns, end_ns)
        reached = min(self._reached.values())
        if reached >= due_ns:
            again = self._stepped and reached >= self._retry_ns  # the epoch did not come
            if due_ns != self._released_for or again:
                self._released_for, self._stepped = due_ns, False
                self._retry_ns = reached + int(RETRY_S * 1e9)
                return True
        return self._last_ns - self._first_ns >= self.hold_ns

    @classmethod
    def for_session(cls, session, hold_s: float = DEFAULT_HOLD_S) -> FrameHold:
        """A hold that watches the wire streams ``session``'s pipeline uses."""
        rates = {
            s.wire.code: s.rate_hz
            for name, s in session.profile.streams.items()
            if s.wire is not None and name in session.pipeline.streams
        }
        return cls(rates, hold_s)

    def stepped(self) -> None:
        """The owner stepped the model after a release: the epoch it was for is staged now,
        or the release came too soon and may be retried."""
        self._stepped = True

    def take(self) -> list[bytes]:
        """The held frames, in arrival order; the hold is empty after."""
        frames, self.frames = self.frames, []
        self._first_ns, self._last_ns = None, 0
        return frames
