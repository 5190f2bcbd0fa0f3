"""Analysis parameters, passed down as one frozen record (the pipeline never reads the environment)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from .cache import CacheConfig
from .errors import InvalidParameter
from .exercises import GENERIC, NAMES

AUTO = "auto"
# Analysis rate by default: every frame. ``--fps 15`` (stride 2 for 30 fps clips, 1 for 24-29 fps)
# gives the same counts on the 14 dev clips and the sports2d demo clip; it becomes the default once
# the throughput work (issue 3) has validated it more widely.
DEFAULT_FPS = 0.0


@dataclass(frozen=True, slots=True)
class AnalysisConfig:
    """exercise: 'auto', 'generic' or one of :data:`pipeline.exercises.NAMES`.
    fps: minimum analysis rate (sets the frame stride); 0 analyzes every frame.
    max_side: longest side in pixels before inference (0: no downscale).
    workers: inference processes; model: None/'full' or a path to a .task file.
    num_poses: people MediaPipe looks for per frame (the subject is chosen among them).
    model_cache: where built model bundles are kept.
    cache: result and frame caches (None: compute everything)."""

    model_cache: Path
    exercise: str = AUTO
    fps: float = DEFAULT_FPS
    max_side: int = 960
    workers: int = 2
    model: str | None = None
    num_poses: int = 1
    cache: CacheConfig | None = None

    def __post_init__(self) -> None:
        allowed = (AUTO, GENERIC, *NAMES)
        if self.exercise not in allowed:
            raise InvalidParameter(f"exercise must be one of {', '.join(allowed)}; got {self.exercise!r}")
        if not (self.fps >= 0):
            raise InvalidParameter(f"fps must be >= 0 (0 = every frame); got {self.fps}")
        if self.workers < 1:
            raise InvalidParameter(f"workers must be >= 1; got {self.workers}")
        if self.max_side < 0 or 0 < self.max_side < 64:
            raise InvalidParameter(f"max_side must be 0 (no limit) or >= 64; got {self.max_side}")
        if not (1 <= self.num_poses <= 6):
            raise InvalidParameter(f"num_poses must be 1..6; got {self.num_poses}")

    def stride(self, clip_fps: float) -> int:
        """The largest frame stride that still analyzes about ``fps`` frames/s or more (1 when fps is 0).

        A minimum sampling rate, not a cap: fast movements keep their turning points
        (29.97 -> stride 2 at 15, 24 -> stride 1).
        """
        if self.fps <= 0 or clip_fps <= self.fps:
            return 1
        return max(1, math.floor(clip_fps / self.fps + 0.01))
