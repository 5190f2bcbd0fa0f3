"""models/registry.py: the cached full bundle, its checksum and self-repair, user .task files, and
the CLI's exit 3 for model problems.

The session's ``xdg_cache`` fixture builds the full bundle once; tests that damage a cache work
on a copy in their own tmp dir.
"""

from __future__ import annotations

import hashlib
import shutil
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import error_line, mediapipe_file_leaks_ignored

from api import settings
from models import registry

SQUAT = "squat_kaiakol_1.mp4"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def model_cache(xdg_cache: Path) -> Path:
    return settings.load({"XDG_CACHE_HOME": str(xdg_cache)}).model_cache


@pytest.fixture
def cache_copy(model_cache: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(model_cache, tmp_path / "models"))


def _bundle(cache: Path) -> Path:
    (path,) = cache.glob("*.task")
    return path


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


# --- the full bundle --------------------------------------------------------------------------

def test_bundle_is_cached_under_xdg_cache_home(xdg_cache: Path, model_cache: Path) -> None:
    assert model_cache == xdg_cache / "formcheck" / "models"
    path = _bundle(model_cache)
    assert path.suffix == ".task" and path.stat().st_size > 1_000_000


def test_bundle_has_the_two_tflite_members(model_cache: Path) -> None:
    with zipfile.ZipFile(_bundle(model_cache)) as zf:
        assert sorted(zf.namelist()) == sorted(registry.BUNDLE_MEMBERS)
        assert zf.testzip() is None
        for name in registry.BUNDLE_MEMBERS:
            data = zf.read(name)
            assert data[4:8] == b"TFL3", f"{name} is not a TFLite flatbuffer"


def test_checksum_sidecar_matches_and_names_the_model(model_cache: Path) -> None:
    path = _bundle(model_cache)
    digest = _sha(path)
    assert path.with_suffix(".sha256").read_text().strip() == digest
    spec = registry.resolve(None, model_cache)
    assert (spec.path, spec.sha256, spec.id) == (path, digest, f"full-{registry.content_id(path)[:12]}")


@pytest.mark.parametrize("name", [None, "", "full"])
def test_default_names_resolve_to_the_cached_bundle_without_a_rebuild(name, model_cache: Path) -> None:
    path = _bundle(model_cache)
    before = path.stat().st_mtime_ns
    assert registry.resolve(name, model_cache).path == path
    assert path.stat().st_mtime_ns == before


def _garbage(p: Path) -> None:
    p.write_bytes(bytes(range(256)) * (p.stat().st_size // 256))


def _flip_one_byte(p: Path) -> None:
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF
    p.write_bytes(bytes(data))


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _empty(p: Path) -> None:
    p.write_bytes(b"")


def _delete(p: Path) -> None:
    p.unlink()


def _sidecar_wrong(p: Path) -> None:
    p.with_suffix(".sha256").write_text("0" * 64 + "\n")


def _sidecar_missing(p: Path) -> None:
    p.with_suffix(".sha256").unlink()


DAMAGE: dict[str, Callable[[Path], None]] = {
    "garbage": _garbage,
    "one_flipped_byte": _flip_one_byte,
    "truncated": _truncate,
    "empty": _empty,
    "deleted": _delete,
    "sidecar_wrong": _sidecar_wrong,
    "sidecar_missing": _sidecar_missing,
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_cache_is_repaired_on_next_resolve(damage: str, cache_copy: Path) -> None:
    path = _bundle(cache_copy)
    DAMAGE[damage](path)
    with mediapipe_file_leaks_ignored():
        spec = registry.resolve(None, cache_copy)
    assert spec.path == path
    assert _sha(path) == spec.sha256 == path.with_suffix(".sha256").read_text().strip()
    registry.validate_bundle(path)
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == sorted(registry.BUNDLE_MEMBERS)
    assert not list(cache_copy.glob("*.tmp*")), "no temp files left behind"


def test_model_id_is_stable_across_rebuilds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with mediapipe_file_leaks_ignored():
        first = registry.full_model(tmp_path / "a")
        real = time.time
        monkeypatch.setattr(time, "time", lambda: real() + 86_400)  # the same build, a day later
        second = registry.full_model(tmp_path / "b")
    assert first.id == second.id


# --- user-supplied .task files ----------------------------------------------------------------

def test_user_model_copy_resolves_with_its_own_name(model_cache: Path, tmp_path: Path) -> None:
    mine = Path(shutil.copy(_bundle(model_cache), tmp_path / "pose_landmarker_mine.task"))
    spec = registry.resolve(str(mine), tmp_path / "unused-cache")
    assert spec.path == mine.resolve()
    assert spec.id == f"pose_landmarker_mine-{registry.content_id(mine)[:12]}"
    assert not (tmp_path / "unused-cache").exists(), "a user model builds nothing"


def _missing(tmp: Path) -> Path:
    return tmp / "does_not_exist.task"


def _empty_file(tmp: Path) -> Path:
    (tmp / "empty.task").write_bytes(b"")
    return tmp / "empty.task"


def _not_zip(tmp: Path) -> Path:
    (tmp / "weights.task").write_bytes(b"TFL3" * 1000)
    return tmp / "weights.task"


def _zip_without_members(tmp: Path) -> Path:
    return _zip(tmp / "hand.task", {"hand_detector.tflite": b"x" * 64, "hand_landmarks_detector.tflite": b"y" * 64})


def _zip_with_one_member(tmp: Path) -> Path:
    return _zip(tmp / "half.task", {"pose_detector.tflite": b"x" * 64})


def _directory(tmp: Path) -> Path:
    (tmp / "model.task").mkdir()
    return tmp / "model.task"


BAD_MODELS: dict[str, tuple[Callable[[Path], Path], tuple[str, ...]]] = {
    "missing": (_missing, ("does not exist",)),
    "empty": (_empty_file, ("empty",)),
    "directory": (_directory, ("not a file",)),
    "not_a_zip": (_not_zip, ("not a valid .task bundle", *registry.BUNDLE_MEMBERS)),
    "zip_without_members": (_zip_without_members, (*registry.BUNDLE_MEMBERS, "hand_detector.tflite")),
    "zip_with_one_member": (_zip_with_one_member, registry.BUNDLE_MEMBERS),
}


@pytest.mark.parametrize("case", list(BAD_MODELS))
def test_bad_user_model_raises_model_error_naming_it(case: str, tmp_path: Path) -> None:
    make, words = BAD_MODELS[case]
    path = make(tmp_path)
    with pytest.raises(registry.ModelError) as err:
        registry.resolve(str(path), tmp_path / "cache")
    msg = str(err.value)
    assert str(path.resolve()) in msg, msg
    for word in words:
        assert word in msg, (word, msg)


# --- through the CLI: exit 3 ------------------------------------------------------------------

@pytest.mark.parametrize("case", ["missing", "empty", "not_a_zip", "zip_without_members"])
def test_cli_bad_model_exits_3_naming_the_file(case: str, run_cli, dev_dir: Path, tmp_path: Path) -> None:
    path = BAD_MODELS[case][0](tmp_path)
    res = run_cli("analyze", dev_dir / SQUAT, "--json", "--workers", "1", "--model", path, timeout=60)
    assert res.code == 3
    assert str(path.resolve()) in error_line(res)


def test_cli_nonexistent_absolute_model_path(run_cli, dev_dir: Path) -> None:
    res = run_cli("analyze", dev_dir / SQUAT, "--json", "--model", "/nonexistent.task", timeout=60)
    assert res.code == 3
    line = error_line(res)
    assert "/nonexistent.task" in line and "does not exist" in line, line


def test_cli_bundle_with_invalid_tflite_members_exits_3(run_cli, dev_dir: Path, tmp_path: Path) -> None:
    path = _zip(tmp_path / "broken.task", {name: b"not a flatbuffer" * 8 for name in registry.BUNDLE_MEMBERS})
    res = run_cli("analyze", dev_dir / SQUAT, "--json", "--workers", "1", "--no-video", "--model", path)
    assert res.code == 3, res.stderr[-500:]
    assert str(path.resolve()) in error_line(res)
