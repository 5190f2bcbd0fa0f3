"""pipeline.mp4: keyframes from an MP4/MOV sample table; anything else is "unknown" (None)."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest

from pipeline import mp4

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


def _clip(path: Path, *codec: str, frames: int = 60, audio: bool = False) -> Path:
    cmd = [FFMPEG, "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=96x64:rate=30"]
    if audio:  # an audio track first: the video's keyframes are still found
        cmd = [FFMPEG, "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "sine=frequency=440",
               "-f", "lavfi", "-i", "testsrc=size=96x64:rate=30", "-map", "0:a", "-map", "1:v", "-c:a", "aac"]
    subprocess.run([*cmd, "-frames:v", str(frames), *codec, "-pix_fmt", "yuv420p", str(path)], check=True,
                   timeout=60)
    return path


@pytest.mark.parametrize("gop", [10, 25])
def test_keyframes_of_a_fixed_gop(tmp_path: Path, gop: int) -> None:
    clip = _clip(tmp_path / f"g{gop}.mp4", "-c:v", "libx264", "-g", str(gop), "-keyint_min", str(gop),
                 "-sc_threshold", "0")
    np.testing.assert_array_equal(mp4.keyframes(str(clip)), np.arange(0, 60, gop))


def test_keyframes_of_the_video_track_beside_audio(tmp_path: Path) -> None:
    clip = _clip(tmp_path / "av.mov", "-c:v", "libx264", "-g", "20", "-keyint_min", "20", "-sc_threshold", "0",
                 "-shortest", audio=True)
    np.testing.assert_array_equal(mp4.keyframes(str(clip)), [0, 20, 40])


def test_all_keyframes_has_no_sync_table(tmp_path: Path) -> None:
    """An intra-only stream has no stss box: None, "every frame is one"."""
    clip = _clip(tmp_path / "intra.mp4", "-c:v", "mjpeg", frames=10)
    assert mp4.keyframes(str(clip)) is None


def test_the_dev_clips_have_their_keyframes_read(dev_dir: Path) -> None:
    keys = mp4.keyframes(str(dev_dir / "squat_rjsong_2.mp4"))
    assert keys is not None and keys[0] == 0 and np.all(np.diff(keys) > 0)


@pytest.mark.parametrize("make", [
    lambda p: p.write_bytes(b""),
    lambda p: p.write_bytes(b"not a video at all, just words"),
    lambda p: p.write_bytes(struct.pack(">I4s", 0xFFFFFF, b"moov") + b"\0" * 32),  # claims more than it has
    lambda p: p.write_bytes(struct.pack(">I4s", 3, b"ftyp")),  # smaller than its own header
    lambda p: p.write_bytes(struct.pack(">I4sQ", 1, b"moov", 2**62)),  # a 64-bit size past the file
])
def test_anything_else_is_unknown(tmp_path: Path, make: object) -> None:
    path = tmp_path / "x.mp4"
    make(path)  # type: ignore[operator]
    assert mp4.keyframes(str(path)) is None
    assert mp4.keyframes(str(tmp_path / "missing.mp4")) is None


def test_a_truncated_file_is_unknown(tmp_path: Path) -> None:
    clip = _clip(tmp_path / "whole.mp4", "-c:v", "libx264", "-g", "10", "-movflags", "+faststart")
    data = clip.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: data.index(b"stss") + 12])  # the sync table cut short
    assert mp4.keyframes(str(cut)) is None
