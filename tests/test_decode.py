"""Decode stage: rotation metadata, real (variable) timestamps, stride, downscale, release."""

from __future__ import annotations

import subprocess
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np
import pytest

from pipeline import decode
from pipeline.errors import CorruptVideo, EmptyInput, NotAVideo, VideoNotFound

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


def _ffmpeg(*args: str) -> None:
    subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-y", *args], check=True, timeout=60)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("clips")
    base, rot, vfr = d / "base.mp4", d / "rot.mp4", d / "vfr.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=320x240:rate=30", "-t", "2", "-c:v", "libx264",
            "-pix_fmt", "yuv420p", str(base))
    _ffmpeg("-display_rotation", "90", "-i", str(base), "-c", "copy", str(rot))
    # first second at 30 fps, then frames 1/15 s apart
    _ffmpeg("-i", str(base), "-vf", "setpts='if(lt(N,30),N/30/TB,(30+(N-30)*2)/30/TB)'",
            "-fps_mode", "passthrough", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(vfr))
    return {"base": base, "rot": rot, "vfr": vfr}


def test_probe_reports_size_fps_frames(clips: dict[str, Path]) -> None:
    info = decode.probe(str(clips["base"]))
    assert (info.width, info.height, info.frames, info.rotation) == (320, 240, 60, 0)
    assert info.fps == pytest.approx(30.0)


def test_rotation_metadata_is_applied(clips: dict[str, Path]) -> None:
    info = decode.probe(str(clips["rot"]))
    assert (info.width, info.height) == (240, 320)
    assert info.rotation in (90, 270)
    first = next(decode.iter_frames(str(clips["rot"])))
    assert first.rgb.shape == (320, 240, 3)


def test_variable_frame_rate_uses_real_timestamps(clips: dict[str, Path]) -> None:
    t = np.array([f.t for f in decode.iter_frames(str(clips["vfr"]))])
    steps = np.diff(t)
    assert steps[:25] == pytest.approx(1 / 30, abs=2e-3)
    assert steps[-20:] == pytest.approx(2 / 30, abs=2e-3)
    assert t[-1] == pytest.approx((30 + 29 * 2) / 30, abs=0.01)


@pytest.mark.parametrize("start,stop,stride", [(0, None, 1), (0, None, 3), (10, 40, 2), (55, 100, 1)])
def test_stride_and_range(clips: dict[str, Path], start: int, stop: int | None, stride: int) -> None:
    frames = list(decode.iter_frames(str(clips["base"]), start, stop, stride))
    expect = list(range(start, min(stop or 60, 60), stride))
    assert [f.index for f in frames] == expect
    assert all(f.t == pytest.approx(f.index / 30, abs=2e-3) for f in frames)


def test_downscale_keeps_aspect(clips: dict[str, Path]) -> None:
    f = next(decode.iter_frames(str(clips["base"]), max_side=200))  # 320x240, halved once
    assert f.rgb.shape == (120, 160, 3)
    assert next(decode.iter_frames(str(clips["base"]), max_side=320)).rgb.shape == (240, 320, 3)
    assert decode.halvings(3840, 2160, 960) == 2
    assert decode.halvings(3840, 2160, 1280) == 2  # 960: halving never lands on 1280
    assert decode.halvings(1280, 720, 1280) == 0
    assert decode.halvings(720, 1281, 1280) == 1
    assert decode.halvings(640, 480, 0) == 0


def test_capture_released_when_consumer_stops_early(clips: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    released = []
    real = cv2.VideoCapture

    class Spy:
        def __init__(self, *a: object) -> None:
            self._cap = real(*a)

        def release(self) -> None:
            released.append(True)
            self._cap.release()

        def __getattr__(self, name: str) -> object:
            return getattr(self._cap, name)

    monkeypatch.setattr(decode.cv2, "VideoCapture", Spy)
    gen = decode.iter_frames(str(clips["base"]))
    next(gen)
    gen.close()
    assert released == [True]
    with pytest.raises(CorruptVideo):
        bad = clips["base"].with_name("head.mp4")
        bad.write_bytes(clips["base"].read_bytes()[:2000])
        decode.probe(str(bad))
    assert len(released) >= 2


@pytest.mark.parametrize(
    "content,error",
    [(None, VideoNotFound), (b"", EmptyInput), (b"not a video at all\n" * 50, NotAVideo)],
)
def test_bad_files(tmp_path: Path, content: bytes | None, error: type[Exception]) -> None:
    p = tmp_path / "clip.mp4"
    if content is not None:
        p.write_bytes(content)
    with pytest.raises(error, match="expected"):
        decode.probe(str(p))


def test_single_threaded_decoding_gives_the_same_frames(clips: dict[str, Path]) -> None:
    default = list(decode.iter_frames(str(clips["base"]), 0, 20))
    single = list(decode.iter_frames(str(clips["base"]), 0, 20, threads=1))
    assert [f.index for f in single] == [f.index for f in default] == list(range(20))
    assert all(np.array_equal(a.rgb, b.rgb) and a.t == b.t for a, b in zip(default, single, strict=True))
