"""Analysis parameters, passed down as one frozen record (the pipeline never reads the environment)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from .cache import CacheConfig
from .errors import InvalidParameter
from .exercises import GENERIC, NAMES

AUTO = "auto"
# Analysis rate by default: about 15 frames/s (stride 2 for 24-30 fps clips, 4 for 60 fps), which
# gives the same counts as every frame on the 14 dev clips and the sports2d demo clip.
DEFAULT_FPS = 15.0


@dataclass(frozen=True, slots=True)
class AnalysisConfig:
    """exercise: 'auto', 'generic' or one of :data:`pipeline.exercises.NAMES`.
    fps: target analysis rate (sets the frame stride); 0 analyzes every frame.
    max_side: longest side in pixels before inference (0: no downscale).
    workers: inference processes; model: None/'full' or a path to a .task file.
    num_poses: people MediaPipe looks for per frame (the subject is chosen among them).
    model_cache: where built model bundles are kept.
    cache: result and frame caches (None: compute everything)."""

    model_cache: Path
    exercise: str = AUTO
    fps: float = DEFAULT_FPS
    max_side: int = 1280
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
        """The frame stride whose rate is nearest to ``fps`` (1 when fps is 0: every frame).

        The analyzed rate lies between 2/3 and 2 times ``fps`` (at 15: 24 fps -> stride 2,
        12 frames/s; 29.97 -> 2; 60 -> 4; 22 -> 1); a clip at or below ``fps`` is never thinned.
        """
        if self.fps <= 0 or not math.isfinite(clip_fps) or clip_fps <= self.fps:
            return 1
        return max(1, math.floor(clip_fps / self.fps + 0.5))
