"""The one place that reads the environment. Everything below receives plain config objects.

| variable            | default                              | meaning                                  |
|---------------------|--------------------------------------|------------------------------------------|
| XDG_CACHE_HOME      | ~/.cache                             | models and samples go under formcheck/   |
| FORMCHECK_WORKERS   | number of CPU cores                  | inference processes                      |
| FORMCHECK_MAX_SIDE  | 960                                  | longest side (px) before inference       |
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Settings:
    cache_dir: Path
    workers: int
    max_side: int

    @property
    def model_cache(self) -> Path:
        return self.cache_dir / "models"

    @property
    def sample_cache(self) -> Path:
        return self.cache_dir / "samples"


class SettingsError(ValueError):
    """An environment variable holds a value formcheck cannot use."""


def _int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name, "")
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None


def load(env: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ if env is None else env)
    base = Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return Settings(
        cache_dir=base / "formcheck",
        workers=max(1, _int(env, "FORMCHECK_WORKERS", os.cpu_count() or 1)),
        max_side=_int(env, "FORMCHECK_MAX_SIDE", 960),
    )
