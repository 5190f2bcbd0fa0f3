"""Pose model registry.

Two kinds of model, both run through MediaPipe's Tasks ``PoseLandmarker``:

- ``full`` (default): the full-complexity pose weights that ship inside the
  ``mediapipe==0.10.21`` wheel. The Tasks API needs image-input metadata in the
  ``.tflite`` files and a zip bundle of the two, so we build that bundle once,
  cache it outside git (``$XDG_CACHE_HOME/formcheck/models``) and check its
  SHA-256 against a sidecar on every load.
- a user-supplied official ``.task`` file (``--model PATH``), e.g. the lite or
  heavy bundles from MediaPipe's model card.

Errors name the file and say what was expected (:class:`ModelError`).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

BUNDLE_MEMBERS = ("pose_detector.tflite", "pose_landmarks_detector.tflite")
_BUILD_VERSION = "1"  # bump when the bundle recipe changes


class ModelError(Exception):
    """A pose model is missing, unreadable or not a pose landmarker bundle."""


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A resolved pose model.

    id: stable identifier used in results and cache keys (name + hash of the members).
    path: the ``.task`` bundle on disk.
    sha256: hex digest of the bundle bytes.
    """

    id: str
    path: Path
    sha256: str


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _bundled_tflite() -> tuple[Path, Path]:
    import mediapipe

    root = Path(mediapipe.__file__).parent / "modules"
    det = root / "pose_detection" / "pose_detection.tflite"
    lmk = root / "pose_landmark" / "pose_landmark_full.tflite"
    for p in (det, lmk):
        if not p.is_file() or p.stat().st_size == 0:
            raise ModelError(
                f"bundled pose weights not found at {p}: expected the file shipped in "
                "the mediapipe==0.10.21 wheel (other releases ship no pose weights)"
            )
    return det, lmk


def _with_image_metadata(path: Path, mean: float, std: float, name: str) -> bytes:
    from mediapipe.tasks.python.metadata.metadata_writers import metadata_writer

    writer = metadata_writer.MetadataWriter.create(bytearray(path.read_bytes()))
    writer.add_general_info(name, f"{name} (from the mediapipe 0.10.21 wheel)")
    writer.add_image_input(norm_mean=[mean], norm_std=[std])
    model, _ = writer.populate()
    return bytes(model)


def build_full_bundle(dest: Path) -> Path:
    """Write the Tasks bundle for the bundled full model to ``dest`` (atomic)."""
    from mediapipe.tasks.python.metadata.metadata_writers import model_asset_bundle_utils

    det, lmk = _bundled_tflite()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(f".tmp{os.getpid()}")
    try:
        members = {
            BUNDLE_MEMBERS[0]: _with_image_metadata(det, 127.5, 127.5, "pose_detector"),
            BUNDLE_MEMBERS[1]: _with_image_metadata(lmk, 0.0, 255.0, "pose_landmarks_detector"),
        }
        model_asset_bundle_utils.create_model_asset_bundle(members, str(tmp))
    except Exception as exc:  # the metadata writer raises assorted types
        tmp.unlink(missing_ok=True)
        raise ModelError(f"could not build the pose model bundle at {dest}: {type(exc).__name__}: {exc}") from exc
    digest = sha256_file(tmp)
    side_tmp = dest.with_suffix(f".sha256.tmp{os.getpid()}")
    side_tmp.write_text(digest + "\n")
    os.replace(tmp, dest)
    os.replace(side_tmp, dest.with_suffix(".sha256"))
    return dest


def validate_bundle(path: Path) -> None:
    """Raise :class:`ModelError` unless ``path`` is a pose landmarker ``.task`` zip."""
    if not path.exists():
        raise ModelError(f"model file {path} does not exist: expected a pose landmarker .task file")
    if not path.is_file() or path.stat().st_size == 0:
        raise ModelError(f"model file {path} is empty or not a file: expected a .task zip bundle")
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            bad = zf.testzip()
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelError(
            f"model file {path} is not a valid .task bundle ({exc}): expected a zip holding "
            f"{' and '.join(BUNDLE_MEMBERS)}"
        ) from None
    missing = [m for m in BUNDLE_MEMBERS if m not in names]
    if missing or bad is not None:
        raise ModelError(
            f"model file {path} is not a pose landmarker bundle: expected members "
            f"{list(BUNDLE_MEMBERS)}, found {sorted(names)}"
            + (f" (corrupt member {bad})" if bad else "")
        )
    with zipfile.ZipFile(path) as zf:
        for member in BUNDLE_MEMBERS:
            head = zf.open(member).read(8)
            if head[4:8] != b"TFL3":
                raise ModelError(
                    f"model file {path}: member {member} is not a TFLite model (expected the "
                    f"'TFL3' flatbuffer identifier, found {head[4:8]!r})"
                )


def content_id(path: Path) -> str:
    """Hex digest of the bundle's member names and bytes: stable across rebuilds (zip
    timestamps differ between builds), so it can key caches."""
    h = hashlib.sha256()
    with zipfile.ZipFile(path) as zf:
        for member in sorted(zf.namelist()):
            h.update(member.encode() + b"\0" + zf.read(member))
    return h.hexdigest()


def full_model(cache_dir: Path) -> ModelSpec:
    """The default model: build (once) and checksum-verify the bundled full model.

    Builds hold an exclusive lock on the cache folder, so processes starting together
    build it once and never see a half-written bundle or a mismatched checksum.
    """
    path = cache_dir / f"pose_landmarker_full_mp0.10.21_v{_BUILD_VERSION}.task"
    with _locked(cache_dir):
        return _verified_full(path)


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _verified_full(path: Path) -> ModelSpec:
    sidecar = path.with_suffix(".sha256")
    if not path.is_file() or not sidecar.is_file():
        build_full_bundle(path)
    digest = sha256_file(path)
    expected = sidecar.read_text().strip()
    if digest != expected:
        # A corrupt cache entry is ours to repair, not the user's problem.
        build_full_bundle(path)
        digest = sha256_file(path)
        if digest != sidecar.read_text().strip():
            raise ModelError(f"model cache {path} fails its checksum even after a rebuild")
    validate_bundle(path)
    return ModelSpec(id=f"full-{content_id(path)[:12]}", path=path, sha256=digest)


def user_model(path: Path) -> ModelSpec:
    """A user-supplied official ``.task`` file (lite, full or heavy)."""
    path = path.expanduser().resolve()
    validate_bundle(path)
    return ModelSpec(id=f"{path.stem}-{content_id(path)[:12]}", path=path, sha256=sha256_file(path))


def resolve(model: str | None, cache_dir: Path) -> ModelSpec:
    """``None``/``"full"`` -> the bundled model; anything else is a path to a ``.task`` file."""
    if model in (None, "", "full"):
        return full_model(cache_dir)
    return user_model(Path(model))
