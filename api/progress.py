"""A small progress bar on stderr (silent when stderr is not a terminal, except for the final line)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Bar:
    def __init__(self, label: str, stream: TextIO | None = None, enabled: bool = True) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = self.stream.isatty()
        self.t0 = time.perf_counter()
        self._last = -1
        self._quarter = 0

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        total = max(total, 1)
        pct = min(100, int(100 * done / total))
        if pct == self._last:
            return
        self._last = pct
        rate = done / max(time.perf_counter() - self.t0, 1e-6)
        fill = pct * 30 // 100
        line = f"{self.label:<10} [{'#' * fill}{'.' * (30 - fill)}] {pct:3d}% {done}/{total} {rate:.0f}/s"
        if self.tty:
            self.stream.write("\r" + line)
            if pct >= 100:
                self.stream.write("\n")
        elif pct >= 100 or pct // 25 > self._quarter:
            self._quarter = pct // 25
            self.stream.write(line + "\n")
        self.stream.flush()
