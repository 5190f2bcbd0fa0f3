"""Synthetic skeletons: per-frame joint parameters -> ``PoseSeries``, and exercise motions.

Body frame: forward ``f``, left ``l``, up ``u``, metres, origin at the hip centre. The camera
sees x right, y down, z away, so yaw 0 faces the camera (the body's left on the image's
right, as MediaPipe labels it) and yaw 180 faces away. Image xy is an orthographic
projection: ``x + scale * wx / aspect``, ``y + scale * (wy - lowest wy)`` (``y`` is the ground).

Parameters (degrees unless noted; ``<name>_l`` / ``<name>_r`` override one side):
knee, hip, elbow (flexion, 0 = straight), abduction / flexion (upper arm sideways / forward
from hanging), lean (trunk from vertical, forward), spread (between the legs), yaw,
x / y (normalized image), scale (frame heights per metre).

- ``Motion``: parameters per frame at ``fps`` plus the turning-point times (``peaks``).
- ``profile``: rest -> turn -> rest reps (raised cosine or linear ramps), per-rep depth/tempo.
- ``squat``, ``curl``, ``jumping_jack``, ``pushup``, ``idle``, ``walk``: motions.
- ``build``: Motion -> PoseSeries (visibility overrides, seeded noise, lost spans).
- ``crop``: a time window of a PoseSeries; ``finish``: run ``pipeline.analyze.finish`` on one.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from models.registry import ModelSpec
from pipeline import analyze
from pipeline.config import AnalysisConfig
from pipeline.records import Analysis, PoseSeries, VideoInfo

ASPECT = 16 / 9
DEFAULTS: dict[str, float] = {
    "knee": 0.0, "hip": 0.0, "elbow": 5.0, "abduction": 8.0, "flexion": 0.0, "lean": 0.0,
    "spread": 8.0, "yaw": 0.0, "x": 0.5, "y": 0.9, "scale": 0.35,
}
TRUNK, HIP_W, SHOULDER_W, UPPER_ARM, FOREARM, THIGH, SHANK = 0.5, 0.2, 0.38, 0.3, 0.27, 0.42, 0.42


@dataclass(frozen=True)
class Motion:
    """params: name -> (n,) array (missing names take DEFAULTS); peaks: turning points (s)."""

    fps: float
    n: int
    params: dict[str, np.ndarray] = field(default_factory=dict)
    peaks: tuple[float, ...] = ()

    def get(self, name: str, side: str = "") -> np.ndarray:
        key = f"{name}_{side}" if side and f"{name}_{side}" in self.params else name
        return np.broadcast_to(self.params.get(key, DEFAULTS.get(name, 0.0)), (self.n,)).astype(np.float64)

    def with_(self, **values: float | np.ndarray) -> Motion:
        return replace(self, params={**self.params, **{k: np.broadcast_to(v, (self.n,)) for k, v in values.items()}})

    def then(self, other: Motion) -> Motion:
        """This motion followed by ``other`` (same fps); other's peaks shift by this duration."""
        keys = set(self.params) | set(other.params)
        base = {k: k.rsplit("_", 1)[0] if k.endswith(("_l", "_r")) else k for k in keys}
        side = {k: k[-1] if k != base[k] else "" for k in keys}
        params = {k: np.concatenate([m.get(base[k], side[k]) for m in (self, other)]) for k in keys}
        dur = self.n / self.fps
        return Motion(self.fps, self.n + other.n, params, self.peaks + tuple(p + dur for p in other.peaks))


def _ramp(u: np.ndarray, shape: str) -> np.ndarray:
    return (1 - np.cos(np.pi * u)) / 2 if shape == "cosine" else u


def profile(
    fps: float, depths: Sequence[float], tempos: Sequence[tuple[float, float, float]], rest_s: float,
    shape: str = "cosine",
) -> tuple[np.ndarray, tuple[float, ...]]:
    """(n,) excursion (0 at rest, ``depth`` at the turn) and turning-point times (mid-hold).

    Each rep is (down_s, hold_s, up_s); ``rest_s`` of rest before, between and after reps.
    """
    knots: list[tuple[float, float, float]] = []  # (segment start s, from, to)
    t, peaks = rest_s, []
    knots.append((0.0, 0.0, 0.0))
    for depth, (down, hold, up) in zip(depths, tempos, strict=True):
        knots += [(t, 0.0, depth), (t + down, depth, depth), (t + down + hold, depth, 0.0),
                  (t + down + hold + up, 0.0, 0.0)]
        peaks.append(t + down + hold / 2)
        t += down + hold + up + rest_s
    starts = np.array([k[0] for k in knots] + [t])
    times = np.arange(int(round(t * fps)) + 1) / fps
    i = np.clip(np.searchsorted(starts, times, side="right") - 1, 0, len(knots) - 1)
    length = np.maximum(starts[i + 1] - starts[i], 1e-9)
    u = np.clip((times - starts[i]) / length, 0.0, 1.0)
    a, b = np.array([k[1] for k in knots])[i], np.array([k[2] for k in knots])[i]
    return a + (b - a) * _ramp(u, shape), tuple(peaks)


def _reps(
    fps: float, n_reps: int, period_s: float, depth: float, rest_s: float, depths: Sequence[float] | None = None,
    periods: Sequence[float] | None = None, tempo: tuple[float, float, float] | None = None, shape: str = "cosine",
) -> tuple[np.ndarray, tuple[float, ...]]:
    periods = list(periods) if periods is not None else [period_s] * (len(depths) if depths is not None else n_reps)
    depths = list(depths) if depths is not None else [depth] * len(periods)
    return profile(fps, depths, [tempo or (p / 2, 0.0, p / 2) for p in periods], rest_s, shape)


def _motion(fps: float, p: np.ndarray, peaks: tuple[float, ...], fixed: dict[str, float],
            **params: np.ndarray | float) -> Motion:
    return Motion(fps, len(p), {k: np.broadcast_to(v, p.shape) for k, v in {**params, **fixed}.items()}, peaks)


def squat(n_reps: int = 5, fps: float = 30.0, period_s: float = 2.0, depth_deg: float = 100.0,
          rest_s: float = 0.5, depths: Sequence[float] | None = None, periods: Sequence[float] | None = None,
          tempo: tuple[float, float, float] | None = None, shape: str = "cosine", **fixed: float) -> Motion:
    """Knee and hip flexion ``depth``, trunk leaning 0.3 x depth at the bottom."""
    p, peaks = _reps(fps, n_reps, period_s, depth_deg, rest_s, depths, periods, tempo, shape)
    return _motion(fps, p, peaks, fixed, knee=p, hip=p, lean=0.3 * p)


def curl(n_reps: int = 5, fps: float = 30.0, period_s: float = 2.0, depth_deg: float = 120.0,
         rest_s: float = 0.5, **kw: float) -> Motion:
    p, peaks = _reps(fps, n_reps, period_s, depth_deg, rest_s)
    return _motion(fps, p, peaks, kw, elbow=10.0 + p, flexion=5.0 + 0.05 * p)


def jumping_jack(n_reps: int = 5, fps: float = 30.0, period_s: float = 1.2, depth_deg: float = 150.0,
                 rest_s: float = 0.2, **kw: float) -> Motion:
    """Arms raised sideways by ``depth`` while the legs open to ~45 degrees."""
    p, peaks = _reps(fps, n_reps, period_s, depth_deg, rest_s)
    return _motion(fps, p, peaks, kw, abduction=10.0 + p, spread=8.0 + 0.25 * p)


def pushup(n_reps: int = 5, fps: float = 30.0, period_s: float = 2.0, depth_deg: float = 80.0,
           rest_s: float = 0.5, **kw: float) -> Motion:
    """Body horizontal (lean 90), facing the floor; elbows flex ``depth``, upper arms go back."""
    p, peaks = _reps(fps, n_reps, period_s, depth_deg, rest_s)
    return _motion(fps, p, peaks, {"yaw": 90.0, **kw}, lean=90.0, elbow=p, flexion=85.0 - 0.6 * p, abduction=0.0)


def keyframes(fps: float, frames: Sequence[tuple[float, dict[str, float]]]) -> Motion:
    """Parameters interpolated linearly between (time s, values) keyframes (unnamed: DEFAULTS)."""
    times = np.array([k for k, _ in frames])
    t = np.arange(int(round(times[-1] * fps)) + 1) / fps
    names = {name for _, values in frames for name in values}
    return Motion(fps, len(t), {k: np.interp(t, times, [v.get(k, DEFAULTS[k]) for _, v in frames]) for k in names})


def idle(seconds: float, fps: float = 30.0, **kw: float) -> Motion:
    n = int(round(seconds * fps))
    return Motion(fps, n, {k: np.full(n, v) for k, v in kw.items()})


def walk(seconds: float, speed_m_s: float = 1.3, fps: float = 30.0, stride_s: float = 1.1, **kw: float) -> Motion:
    """Walking toward the image's right (side view): legs and arms swing in antiphase."""
    n = int(round(seconds * fps))
    t = np.arange(n) / fps
    ph = 2 * np.pi * t / stride_s
    scale = kw.get("scale", DEFAULTS["scale"])
    x = kw.pop("x", 0.1) + speed_m_s * t * scale / ASPECT
    legs = {f"hip_{s}": 25 * np.sin(ph + o) for s, o in (("l", 0), ("r", np.pi))}
    knees = {f"knee_{s}": 30 * (1 + np.sin(ph + o - 1.0)) for s, o in (("l", 0), ("r", np.pi))}
    arms = {f"flexion_{s}": 20 * np.sin(ph + o) for s, o in (("l", np.pi), ("r", 0))}
    return Motion(fps, n, {"yaw": np.full(n, 90.0), "x": x, **legs, **knees, **arms,
                           **{k: np.full(n, v) for k, v in kw.items()}})


def _vec(fwd: np.ndarray | float, left: np.ndarray | float, up: np.ndarray | float) -> np.ndarray:
    """(..., 3) body-frame vectors (forward, left, up)."""
    return np.stack(np.broadcast_arrays(fwd, left, up), axis=-1)


def _body(m: Motion) -> np.ndarray:
    """(n, 33, 3) landmarks in body coordinates (f, l, u), hip-centred."""
    lam = np.radians(m.get("lean"))
    fwd, up = _vec(1.0, 0.0, 0.0), _vec(0.0, 0.0, 1.0)
    t_up, t_fwd = _vec(np.sin(lam), 0 * lam, np.cos(lam)), _vec(np.cos(lam), 0 * lam, -np.sin(lam))
    pts = np.zeros((m.n, 33, 3))
    mid_sh = TRUNK * t_up
    head = mid_sh + 0.2 * t_up
    pts[:, 0] = head + 0.1 * t_fwd
    for i, (side, out) in enumerate((("l", _vec(0.0, 1.0, 0.0)), ("r", _vec(0.0, -1.0, 0.0)))):
        sh, hip = mid_sh + out * SHOULDER_W / 2, out * HIP_W / 2
        a, sf, e = (np.radians(m.get(k, side))[:, None] for k in ("abduction", "flexion", "elbow"))
        d = np.sin(sf) * t_fwd + np.cos(sf) * np.sin(a) * out - np.cos(sf) * np.cos(a) * t_up  # upper arm
        nrm = np.cos(sf) * t_fwd - np.sin(sf) * np.sin(a) * out + np.sin(sf) * np.cos(a) * t_up  # flexes toward
        elbow = sh + UPPER_ARM * d
        fd = np.cos(e) * d + np.sin(e) * nrm
        wrist = elbow + FOREARM * fd
        at = np.radians(m.get("hip", side) - m.get("lean"))[:, None]  # thigh from straight down, forward +
        ash = at - np.radians(m.get("knee", side))[:, None]
        sp = np.radians(m.get("spread", side) / 2)[:, None]
        thigh = np.cos(sp) * (np.sin(at) * fwd - np.cos(at) * up) + np.sin(sp) * out
        shank = np.cos(sp) * (np.sin(ash) * fwd - np.cos(ash) * up) + np.sin(sp) * out
        knee = hip + THIGH * thigh
        ankle = knee + SHANK * shank
        foot = np.cos(ash) * fwd + np.sin(ash) * up
        body = (sh, elbow, wrist, wrist + 0.08 * fd - 0.02 * out, wrist + 0.09 * fd, wrist + 0.05 * fd + 0.03 * out,
                hip, knee, ankle, ankle - 0.05 * foot + 0.04 * shank, ankle + 0.15 * foot + 0.05 * shank)
        eye = head + 0.08 * t_fwd + 0.03 * t_up
        face = (eye + 0.02 * out, eye + 0.035 * out, eye + 0.05 * out, head + 0.075 * out,
                head + 0.08 * t_fwd - 0.04 * t_up + 0.025 * out)
        for idx, p in zip((*range(11 + i, 33, 2), 1 + 3 * i, 2 + 3 * i, 3 + 3 * i, 7 + i, 9 + i), body + face,
                          strict=True):
            pts[:, idx] = p
    return pts


def build(
    m: Motion, *, visibility: float = 0.95, vis: dict[int, float | np.ndarray] | None = None,
    noise_m: float = 0.0, seed: int = 0, lost: Sequence[tuple[float, float]] = (), aspect: float = ASPECT,
) -> PoseSeries:
    """The PoseSeries a perfect tracker would report for ``m`` (plus noise, occlusion, losses)."""
    body = _body(m)
    th = np.radians(m.get("yaw"))[:, None]
    fwd, left = np.stack([np.sin(th), 0 * th, -np.cos(th)], -1), np.stack([np.cos(th), 0 * th, np.sin(th)], -1)
    world = body[..., :1] * fwd + body[..., 1:2] * left + body[..., 2:] * np.array([0.0, -1.0, 0.0])
    scale = m.get("scale")[:, None]
    ground = world[..., 1].max(axis=1, keepdims=True)
    rng = np.random.default_rng(seed)
    world = world + rng.normal(0.0, noise_m, world.shape) if noise_m else world
    xy = np.stack([m.get("x")[:, None] + scale * world[..., 0] / aspect,
                   m.get("y")[:, None] + scale * (world[..., 1] - ground)], axis=-1)
    v = np.full((m.n, 33), visibility)
    for idx, val in (vis or {}).items():
        v[:, idx] = val
    t = np.arange(m.n) / m.fps
    for a, b in lost:
        gone = (t >= a) & (t < b)
        xy[gone], world[gone], v[gone] = np.nan, np.nan, 0.0
    return PoseSeries(np.arange(m.n, dtype=np.int64), t, xy.astype(np.float32), v.astype(np.float32),
                      world.astype(np.float32), aspect)


def crop(pose: PoseSeries, t0: float, t1: float = np.inf) -> PoseSeries:
    """Frames with t0 <= t < t1, as a clip of its own (t and frame restart at 0)."""
    k = (pose.t >= t0) & (pose.t < t1)
    return PoseSeries(pose.frame[k] - pose.frame[k][0], pose.t[k] - pose.t[k][0], pose.xy[k], pose.visibility[k],
                      pose.world[k], pose.aspect)


def finish(pose: PoseSeries, exercise: str = "auto", cache: Path | None = None) -> Analysis:
    """``pipeline.analyze.finish`` on a synthetic clip (no video, no model)."""
    fps = (len(pose) - 1) / max(float(pose.t[-1] - pose.t[0]), 1e-6) if len(pose) > 1 else 30.0
    info = VideoInfo("synthetic.mp4", len(pose), fps, 1280, 720, 0, 0)
    cfg = AnalysisConfig(model_cache=cache or Path(tempfile.gettempdir()), exercise=exercise)
    model = ModelSpec(id="test", path=Path("x"), sha256="0" * 64)
    return analyze.finish(info, pose, cfg, model, 1, 0.0, 0.0)
