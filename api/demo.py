"""Fetch the real sample video that the ``sports2d`` wheel ships (BSD-3), cached under the user's cache dir.

A man on a cabinet does two jumping jacks (frames 0-78) while a woman walks past,
then he jumps down.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "sports2d==0.8.34"
MEMBER = "Sports2D/Demo/demo.mp4"


class DemoError(RuntimeError):
    pass


def sample_video(cache: Path) -> Path:
    """Path to the cached demo clip, downloading the wheel with ``pip download --no-deps`` once."""
    dest = cache / "sports2d_demo.mp4"
    if dest.is_file() and dest.stat().st_size > 0:
        return dest
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", tmp, PACKAGE]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            raise DemoError(
                f"could not download {PACKAGE} to get its sample video (pip exit {proc.returncode}): "
                f"{proc.stderr.strip()[-300:]}"
            )
        with zipfile.ZipFile(wheels[0]) as zf:
            if MEMBER not in zf.namelist():
                raise DemoError(f"{wheels[0].name} has no {MEMBER}: expected the Sports2D demo clip")
            part = dest.with_suffix(".part")
            part.write_bytes(zf.read(MEMBER))
            part.replace(dest)
    return dest
