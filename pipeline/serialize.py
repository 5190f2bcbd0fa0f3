"""Analyses and per-frame landmarks to bytes and back, for the caches (no pickle: npz + JSON)."""

from __future__ import annotations

import io
import json
from dataclasses import asdict

import numpy as np

from .records import N_LANDMARKS, Analysis, AngleTable, PoseSeries, Rep, VideoInfo

_FRAME_FLOATS = N_LANDMARKS * (2 + 1 + 3)


def analysis_to_bytes(a: Analysis) -> bytes:
    meta = {
        "info": asdict(a.info), "aspect": a.pose.aspect, "angle_names": list(a.angles.names),
        "primary": a.primary, "reps": [asdict(r) for r in a.reps], "summary": a.summary,
    }
    buf = io.BytesIO()
    np.savez(
        buf, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8), frame=a.pose.frame, t=a.pose.t,
        xy=a.pose.xy, visibility=a.pose.visibility, world=a.pose.world, angles=a.angles.values,
        primary_signal=a.primary_signal,
    )
    return buf.getvalue()


def analysis_from_bytes(data: bytes) -> Analysis:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        meta = json.loads(z["meta"].tobytes().decode())
        pose = PoseSeries(z["frame"], z["t"], z["xy"], z["visibility"], z["world"], float(meta["aspect"]))
        reps = tuple(
            Rep(**{**r, "faults": tuple(r["faults"]), "secondary": tuple(tuple(x) for x in r["secondary"])})
            for r in meta["reps"]
        )
        return Analysis(
            VideoInfo(**meta["info"]), pose, AngleTable(tuple(meta["angle_names"]), z["angles"]),
            meta["primary"], z["primary_signal"], reps, meta["summary"],
        )


def frame_to_bytes(xy: np.ndarray, visibility: np.ndarray, world: np.ndarray) -> bytes:
    """One frame's k candidates: xy (k, 33, 2), visibility (k, 33), world (k, 33, 3) -> bytes."""
    return b"".join(np.ascontiguousarray(x, np.float32).tobytes() for x in (xy, visibility, world))


def frame_from_bytes(data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    flat = np.frombuffer(data, np.float32)
    if flat.size % _FRAME_FLOATS:
        raise ValueError(f"frame record: expected a multiple of {_FRAME_FLOATS} floats, got {flat.size}")
    k = flat.size // _FRAME_FLOATS
    a, b = k * N_LANDMARKS * 2, k * N_LANDMARKS * 3
    return (flat[:a].reshape(k, N_LANDMARKS, 2).copy(), flat[a:b].reshape(k, N_LANDMARKS).copy(),
            flat[b:].reshape(k, N_LANDMARKS, 3).copy())
