"""Frozen records that the stages pass along. Arrays are documented with shape, dtype and unit."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

N_LANDMARKS = 33


@dataclass(frozen=True, slots=True)
class VideoInfo:
    """What the container says about a clip, after rotation is applied.

    width/height: decoded frame size in pixels, rotation already applied.
    fps: nominal frame rate (frames/s); real timestamps come with the frames.
    """

    path: str
    frames: int
    fps: float
    width: int
    height: int
    rotation: int
    size_bytes: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps if self.fps > 0 else 0.0


@dataclass(frozen=True, slots=True)
class PoseSeries:
    """Landmarks for one subject over a clip (only the analyzed frames).

    frame: (n,) int64 index of the source frame.
    t: (n,) float64 seconds from clip start (real presentation timestamps).
    xy: (n, 33, 2) float32 normalized image coords (x right, y down); NaN where not detected.
    visibility: (n, 33) float32 in [0, 1]; 0 where not detected.
    world: (n, 33, 3) float32 metres, hip-centred (MediaPipe world landmarks); NaN where not detected.
    aspect: width / height of the analyzed frames (to turn normalized x into y units).
    """

    frame: np.ndarray
    t: np.ndarray
    xy: np.ndarray
    visibility: np.ndarray
    world: np.ndarray
    aspect: float

    def __post_init__(self) -> None:
        n = self.frame.shape[0]
        expect = {
            "t": (n,),
            "xy": (n, N_LANDMARKS, 2),
            "visibility": (n, N_LANDMARKS),
            "world": (n, N_LANDMARKS, 3),
        }
        for name, shape in expect.items():
            got = getattr(self, name).shape
            if got != shape:
                raise ValueError(f"PoseSeries.{name}: expected shape {shape}, got {got}")

    def __len__(self) -> int:
        return int(self.frame.shape[0])

    @property
    def detected(self) -> np.ndarray:
        """(n,) bool: a pose was found in the frame."""
        return ~np.isnan(self.xy[:, 0, 0])

    def xy_units(self) -> np.ndarray:
        """(n, 33, 2) float64 coords in units of frame height (x scaled by aspect)."""
        out = self.xy.astype(np.float64)
        out[..., 0] *= self.aspect
        return out


@dataclass(frozen=True, slots=True)
class Rep:
    """One counted repetition. Times in seconds from clip start; angles in degrees."""

    index: int
    start_s: float
    peak_s: float
    end_s: float
    rom_deg: float
    eccentric_s: float
    pause_s: float
    concentric_s: float
    peak_velocity_dps: float
    asymmetry_deg: float | None
    confidence: float
    faults: tuple[str, ...] = field(default=())
    secondary: tuple[tuple[str, float, float], ...] = field(default=())  # (angle, min, max) degrees

    def to_dict(self) -> dict[str, object]:
        """JSON-ready: rounded, and None where a measure could not be taken (never NaN)."""
        return {
            "index": self.index,
            "start_s": _num(self.start_s, 3),
            "peak_s": _num(self.peak_s, 3),
            "end_s": _num(self.end_s, 3),
            "rom_deg": _num(self.rom_deg, 1),
            "eccentric_s": _num(self.eccentric_s, 3),
            "pause_s": _num(self.pause_s, 3),
            "concentric_s": _num(self.concentric_s, 3),
            "peak_velocity_dps": _num(self.peak_velocity_dps, 1),
            "asymmetry_deg": _num(self.asymmetry_deg, 1),
            "confidence": _num(self.confidence, 3),
            "faults": list(self.faults),
            "secondary": {n: {"min_deg": _num(lo, 1), "max_deg": _num(hi, 1)} for n, lo, hi in self.secondary},
        }


def _num(x: float | None, digits: int) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), digits)


@dataclass(frozen=True, slots=True)
class AngleTable:
    """Joint angles per analyzed frame.

    names: m angle names (see ``pipeline.angles.ANGLES``).
    values: (n, m) float64 degrees; NaN where a landmark was missing or not visible enough.
    """

    names: tuple[str, ...]
    values: np.ndarray

    def __post_init__(self) -> None:
        if self.values.ndim != 2 or self.values.shape[1] != len(self.names):
            raise ValueError(
                f"AngleTable.values: expected shape (n, {len(self.names)}), got {self.values.shape}"
            )

    def __getitem__(self, name: str) -> np.ndarray:
        return self.values[:, self.names.index(name)]


@dataclass(frozen=True, slots=True)
class Analysis:
    """Everything one analysis produced; ``summary`` is the JSON document (analysis.json).

    primary: name of the primary signal (an angle name or a derived signal name).
    primary_signal: (n,) float64 degrees (or the derived signal's unit), aligned with pose.t.
    reps: counted repetitions in time order.
    """

    info: VideoInfo
    pose: PoseSeries
    angles: AngleTable
    primary: str
    primary_signal: np.ndarray
    reps: tuple[Rep, ...]
    summary: dict[str, object]
