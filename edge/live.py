"""What edge-run shows while it runs: a rich live panel on a terminal, plain log lines otherwise.

Panel: the current stage and its probabilities, the hypnogram so far (one character per epoch,
last 120 epochs), per-stream frames / lost / gap samples, rejected frames by reason, and the
model's latency per epoch. Plain mode prints one line every ``every`` epochs and never redraws.
"""

from __future__ import annotations

import sys
import time

from edge.staging import EpochRecord

GLYPH = {0: "W", 1: "1", 2: "2", 3: "3", 4: "R", -1: "?"}


class LiveView:
    def __init__(self, title: str, plain: bool | None = None, every: int = 20) -> None:
        self.title = title
        self.plain = not sys.stdout.isatty() if plain is None else plain
        self.every = every
        self.glyphs: list[str] = []
        self.last: EpochRecord | None = None
        self._t0 = time.perf_counter()
        self._live = None
        if not self.plain:
            from rich.live import Live

            self._live = Live(refresh_per_second=4, transient=False)
            self._live.start()

    def update(self, records: list[EpochRecord], counts: dict, model_s: float) -> None:
        if not records:
            return
        before = len(self.glyphs)
        self.glyphs += [GLYPH[r.stage] for r in records]
        self.last = records[-1]
        per_epoch_ms = 1e3 * model_s / max(1, len(self.glyphs))
        if self._live is not None:
            self._live.update(self._panel(counts, per_epoch_ms))
        elif len(self.glyphs) // self.every > before // self.every:
            r = self.last
            print(
                f"edge-run: epoch {r.index} ({r.start_s / 3600:.2f} h) {r.stage_name:8s} "
                f"{''.join(self.glyphs[-self.every :])}  frames {counts.get('frames', 0):,} "
                f"lost {counts.get('lost', 0)} gaps {counts.get('gap_samples', 0):,} samples",
                flush=True,
            )

    def _panel(self, counts: dict, per_epoch_ms: float):
        from rich.panel import Panel
        from rich.table import Table

        r = self.last
        t = Table.grid(padding=(0, 2))
        t.add_row("stage", f"[bold]{r.stage_name}[/] (epoch {r.index}, {r.start_s / 3600:.2f} h)")
        if r.probabilities:
            t.add_row("p", "  ".join(f"{k} {v:.2f}" for k, v in r.probabilities.items()))
        if r.reason:
            t.add_row("why", r.reason)
        t.add_row("hypnogram", "".join(self.glyphs[-120:]))
        t.add_row(
            "link",
            f"frames {counts.get('frames', 0):,}  lost {counts.get('lost', 0)}  "
            f"duplicates {counts.get('duplicates', 0)}  reordered {counts.get('reordered', 0)}  "
            f"gap samples {counts.get('gap_samples', 0):,}",
        )
        bad = {k[9:]: v for k, v in counts.items() if k.startswith("rejected:")}
        if bad:
            t.add_row("rejected", ", ".join(f"{k} {v}" for k, v in bad.items()))
        missing = ", ".join(f"{k} {100 * v:.0f}%" for k, v in r.missing.items() if v)
        t.add_row("quality", missing or "all channels complete")
        t.add_row("model", f"{per_epoch_ms:.2f} ms per epoch")
        return Panel(t, title=self.title)

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
