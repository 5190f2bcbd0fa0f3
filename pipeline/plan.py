"""Where to cut a clip into chunks, one per inference worker, so that they end together.

Each chunk is priced by its parts (:class:`Costs`): inference and decoding per frame, and for a
chunk after the first, opening the file, the seek (decoding from the keyframe before its first
frame, :func:`pipeline.decode.keyframes`) and the anchor (a detection on the clip's first frame).
:func:`balance` finds the cuts whose costliest chunk costs least; :func:`plan_chunks` takes as
many chunks as end soonest, up to one per worker.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .cache import CacheConfig
from .infer import ChunkJob, InferOptions
from .records import VideoInfo

MIN_CHUNK = 15  # analyzed frames (0.5 s at 30 fps): no chunk is planned shorter
# What a chunk's parts cost a worker on a busy core, as measured on the dev clips (2-vCPU VM,
# 2026-12-06; the machine's speed moved 1.7x between days, their ratios much less): inferring one
# analyzed frame; decoding one frame, per megapixel and per kilobyte of the clip's mean frame (every
# frame of the stretch is decoded, the stride's skipped ones too; 0.9-3.3 ms a frame on the dev
# clips, by bitrate more than by size); a later chunk's start: opening the file and decoding from the
# keyframe before its first frame (the seek; SEEK_S when the keyframes are unknown), and the anchor
# (frame 0 decoded, detected on, then the steered detection). The plan balances their sums.
INFER_S, DECODE_MPIX_S, DECODE_KB_S = 0.011, 0.0008, 0.00013
OPEN_S, SEEK_S, ANCHOR_S = 0.01, 0.1, 0.07


def chunk_count(analyzed: int, workers: int) -> int:
    """The most chunks a clip of ``analyzed`` frames is cut into: one per worker, each at least
    ``MIN_CHUNK`` frames (a clip too short for that gets fewer, down to one). :func:`plan_chunks`
    takes fewer still where a later chunk's start would cost more than its share saves."""
    return max(1, min(workers, analyzed // MIN_CHUNK))


def plan_chunks(
    info: VideoInfo, stride: int, workers: int, max_side: int, options: InferOptions,
    cache: CacheConfig | None = None, keys: np.ndarray | None = None,
) -> list[ChunkJob]:
    """Split the clip into chunks on the stride grid that should take equally long by the costs
    above: a later chunk's start (its seek to the frame, from the keyframe ``keys`` lists before it,
    and its anchor) is paid with fewer frames; as many chunks as end soonest, up to one per worker.
    The last chunk reads to the real end of the stream (frame counts in headers lie).

    No chunk decodes frames before its own: each tracks from a detection on its first frame,
    steered to where the clip's first frame shows its subject (:attr:`ChunkJob.anchor`), and
    :func:`pipeline.pool.keep_subject` runs a chunk again when it still found someone else.
    """
    analyzed = math.ceil(info.frames / stride)
    anchor = 0 if options.num_poses == 1 else None  # several people a frame: subject.select picks
    cost = Costs.of(info, stride, options, keys)
    plans = [balance(analyzed, n, cost) for n in range(1, chunk_count(analyzed, workers) + 1)]
    best = min(plans, key=lambda cuts: (cost.worst(cuts, analyzed), len(cuts)))  # ties: fewer chunks
    n, cuts = len(best), [stride * a for a in best]
    return [ChunkJob(info.path, a, cuts[i + 1] if i + 1 < n else None, stride, max_side, info.fps, options, cache,
                     anchor=anchor if a else None)
            for i, a in enumerate(cuts)]


@dataclass(frozen=True, slots=True)
class Costs:
    """What a chunk costs (seconds, the constants above) by where it starts and how long it runs."""

    stride: int
    decode_s: float  # one frame of this clip
    anchor_s: float
    keys: np.ndarray | None  # keyframes (frame numbers, ascending, from 0), None: unknown

    @staticmethod
    def of(info: VideoInfo, stride: int, options: InferOptions, keys: np.ndarray | None) -> Costs:
        """The costs of ``info``'s clip: its frames' decoding by size and mean bytes, an anchor when
        one person is tracked (``options.num_poses == 1``)."""
        frame_kb = info.size_bytes / 1024 / max(info.frames, 1)
        decode_s = DECODE_MPIX_S * info.width * info.height / 1e6 + DECODE_KB_S * frame_kb
        return Costs(stride, decode_s, ANCHOR_S if options.num_poses == 1 else 0.0, keys)

    def start(self, first: np.ndarray) -> np.ndarray:
        """What starting at analyzed frame ``first`` costs beyond the first chunk's start."""
        frame = first * self.stride
        if self.keys is None:
            seek = np.full(frame.shape, SEEK_S)
        else:
            seek = (frame - self.keys[np.searchsorted(self.keys, frame, "right") - 1]) * self.decode_s
        return np.where(first > 0, OPEN_S + self.anchor_s + seek, 0.0)

    def frames(self, count: np.ndarray) -> np.ndarray:
        """What ``count`` analyzed frames cost (with the stride's frames decoded between them)."""
        return count * (INFER_S + self.stride * self.decode_s)

    def each(self, cuts: list[int], analyzed: int) -> np.ndarray:
        """Each chunk's cost when chunks start at ``cuts`` (analyzed frames)."""
        first, ends = np.array(cuts), np.array([*cuts[1:], analyzed])
        out: np.ndarray = self.start(first) + self.frames(ends - first)
        return out

    def worst(self, cuts: list[int], analyzed: int) -> float:
        """The costliest chunk's cost when chunks start at ``cuts``."""
        return float(np.max(self.each(cuts, analyzed)))


def balance(analyzed: int, n: int, cost: Costs) -> list[int]:
    """Where n chunks of ``analyzed`` frames start (in analyzed frames) so that the costliest one
    costs least, every chunk keeping at least half an equal share.

    A chunk's cost grows with its end and falls with a later start (a seek decodes fewer frames
    than the chunk would infer), so filling each chunk in turn up to a budget and searching the
    least budget that leaves the last chunk within it is optimal (the linear partition argument).
    """
    least = max(1, math.ceil(analyzed / n / 2))
    per = float(cost.frames(np.array(1)))

    def fill(budget: float) -> list[int]:
        cuts = [0]
        for k in range(n - 1):
            room = (budget - float(cost.start(np.array(cuts[-1])))) / per
            cuts.append(cuts[-1] + min(max(least, math.floor(room + 1e-9)), analyzed - cuts[-1] - least * (n - 1 - k)))
        return cuts

    def fits(budget: float) -> bool:
        return float(cost.each(fill(budget), analyzed)[-1]) <= budget

    lo, hi = 0.0, float(np.max(cost.start(np.arange(1, analyzed + 1)), initial=0.0) + cost.frames(np.array(analyzed)))
    for _ in range(60):  # to well under a frame's cost
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if fits(mid) else (mid, hi)
    return fill(hi)
