"""The one place that reads the environment. Everything below receives plain config objects.

| variable            | default                              | meaning                                  |
|---------------------|--------------------------------------|------------------------------------------|
| XDG_CACHE_HOME      | ~/.cache                             | models and samples go under formcheck/   |
| FORMCHECK_WORKERS   | number of CPU cores                  | inference processes                      |
| FORMCHECK_SCHEDULER | (none: a local process pool)         | tcp://HOST:PORT of a Dask scheduler to run inference on |
| FORMCHECK_MAX_SIDE  | 1280                                 | longest side (px) before inference       |
| FORMCHECK_CACHE_MB  | 2048                                 | bound of the on-disk cache               |
| FORMCHECK_MEMORY_CACHE_MB | 256                            | bound of the in-process cache            |
| REDIS_URL           | (none)                               | adds a Redis cache tier                  |
| FORMCHECK_CACHE_TTL | 604800                               | Redis entry lifetime, seconds            |
| FORMCHECK_DATA_DIR  | $XDG_DATA_HOME/formcheck (~/.local/share/formcheck) | jobs database, uploads, artifacts |
| DATABASE_URL        | (none: SQLite under the data dir)    | postgresql://... stores jobs and keys there |
| FORMCHECK_DB_POOL_MIN / _MAX | 5 / 20                      | asyncpg pool bounds                      |
| FORMCHECK_RATE_LIMIT | 100/15m                             | requests per API key (or client address) |
| FORMCHECK_POST_RATE_LIMIT | 10/1m                          | analysis and recommendation posts per key |
| FORMCHECK_MAX_UPLOAD_MB | 200                              | largest upload accepted (413 above)      |
| FORMCHECK_MAX_DURATION_S | 900                             | longest video accepted (422 above)       |
| FORMCHECK_MAX_FRAMES | 16                                  | images in one POST /v1/frames            |
| FORMCHECK_QUEUE_MAX | 64                                   | queued jobs before uploads get 503 + Retry-After |
| FORMCHECK_JOB_ATTEMPTS | 3                                 | tries of a job whose worker died          |
| FORMCHECK_CORS_ORIGINS | (none)                            | comma-separated origins allowed by CORS  |
| FORMCHECK_OPEN      | 0                                    | 1: no API keys (development only)        |
| FORMCHECK_LOG_FORMAT | auto                                | json, text, or auto (json when not a terminal) |
| OPENAI_API_KEY      | (none: rules-based recommendations)  | enables model recommendations (never logged) |
| OPENAI_MODEL        | gpt-4o-mini                          | chat model for recommendations           |
| OPENAI_BASE_URL     | https://api.openai.com/v1            | any OpenAI-compatible server             |
| FORMCHECK_OPENAI_TIMEOUT_S | 20                            | seconds per upstream attempt             |
| FORMCHECK_OPENAI_RETRIES | 2                               | retries after a 429/5xx/timeout (then rules) |
| FORMCHECK_OPENAI_BACKOFF_S | 0.5                           | first retry delay, doubled per retry     |
| FORMCHECK_RECOMMEND_TTL | 86400                            | recommendation cache lifetime, seconds   |
| FORMCHECK_RECOMMEND_RATE_LIMIT | 10/1m                     | recommendation posts per key             |
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.cache import CacheConfig


@dataclass(frozen=True, slots=True)
class Settings:
    cache_dir: Path
    workers: int
    max_side: int
    cache_mb: int = 2048
    memory_cache_mb: int = 256
    redis_url: str | None = None
    cache_ttl_s: int = 7 * 86400
    server: ServerSettings = field(default_factory=lambda: ServerSettings(Path("formcheck-data")))
    recommend: RecommendSettings = field(default_factory=lambda: RecommendSettings())
    scheduler: str | None = None  # a Dask scheduler address (None: the local pool)

    def cache(self, enabled: bool = True) -> CacheConfig | None:
        """The cache tiers to use (None with ``enabled=False``, i.e. ``--no-cache``)."""
        if not enabled:
            return None
        return CacheConfig(
            disk_path=self.cache_dir / "cache.sqlite3", memory_bytes=self.memory_cache_mb << 20,
            disk_bytes=self.cache_mb << 20, redis_url=self.redis_url, redis_ttl_s=self.cache_ttl_s,
        )

    @property
    def model_cache(self) -> Path:
        return self.cache_dir / "models"

    @property
    def sample_cache(self) -> Path:
        return self.cache_dir / "samples"


@dataclass(frozen=True, slots=True)
class Limit:
    """``count`` requests per ``window_s`` seconds."""

    count: int
    window_s: int

    def __str__(self) -> str:
        return f"{self.count}/{self.window_s}s"


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """What ``formcheck serve`` and ``formcheck keys`` read (see the table above)."""

    data_dir: Path
    database_url: str | None = None
    db_pool_min: int = 5
    db_pool_max: int = 20
    rate_limit: Limit = Limit(100, 900)
    post_rate_limit: Limit = Limit(10, 60)
    max_upload_mb: int = 200
    max_duration_s: int = 900
    max_frames: int = 16
    queue_max: int = 64
    job_attempts: int = 3
    cors_origins: tuple[str, ...] = ()
    open_mode: bool = False
    log_format: str = "auto"

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "formcheck.sqlite3"

    @property
    def uploads(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def artifacts(self) -> Path:
        return self.data_dir / "artifacts"

    def describe(self) -> dict[str, object]:
        """For logs and /health/ready: every setting, the database URL without its password."""
        url = self.database_url
        return {"data_dir": str(self.data_dir), "database": redact(url) if url else f"sqlite:{self.sqlite_path}",
                "rate_limit": str(self.rate_limit), "post_rate_limit": str(self.post_rate_limit),
                "max_upload_mb": self.max_upload_mb, "max_duration_s": self.max_duration_s,
                "queue_max": self.queue_max, "open_mode": self.open_mode}


DEFAULT_MODEL = "gpt-4o-mini"
DEFAULT_BASE_URL = "https://api.openai.com/v1"


@dataclass(frozen=True, slots=True)
class RecommendSettings:
    """Recommendations (``api.recommend``): the model when a key is set, else the rules."""

    api_key: str | None = field(default=None, repr=False)  # never in a repr, a log or a describe()
    model: str = DEFAULT_MODEL
    base_url: str = DEFAULT_BASE_URL
    timeout_s: float = 20.0
    retries: int = 2
    backoff_s: float = 0.5
    ttl_s: int = 86400
    rate_limit: Limit = Limit(10, 60)

    def describe(self) -> dict[str, object]:
        return {"source": f"openai:{self.model}" if self.api_key else "rules", "base_url": redact(self.base_url),
                "timeout_s": self.timeout_s, "retries": self.retries, "ttl_s": self.ttl_s,
                "rate_limit": str(self.rate_limit)}


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***`` (secrets never reach a log)."""
    return re.sub(r"(//[^/:@]*:)[^@/]*@", r"\1***@", url)


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


def _bounded(env: dict[str, str], name: str, default: int, lo: int, hi: int) -> int:
    value = _int(env, name, default)
    if not lo <= value <= hi:
        raise SettingsError(f"{name} must be {lo}..{hi}, got {value}")
    return value


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _limit(env: dict[str, str], name: str, default: Limit) -> Limit:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    m = re.fullmatch(r"(\d+)\s*/\s*(\d*)\s*([smhd])", raw)
    if not m or int(m.group(1)) < 1 or m.group(2) == "0":
        raise SettingsError(f"{name} must look like 100/15m (count/[n]unit, unit s, m, h or d), got {raw!r}")
    return Limit(int(m.group(1)), int(m.group(2) or 1) * _UNITS[m.group(3)])


def _flag(env: dict[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise SettingsError(f"{name} must be 1 or 0 (true/false), got {raw!r}")


def _server(env: dict[str, str]) -> ServerSettings:
    data = env.get("FORMCHECK_DATA_DIR") or str(
        Path(env.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "formcheck")
    url = env.get("DATABASE_URL") or None
    if url is not None and not url.startswith(("postgres://", "postgresql://")):
        raise SettingsError(f"DATABASE_URL must start with postgresql:// (or be unset for SQLite), got {redact(url)!r}")
    lo = _bounded(env, "FORMCHECK_DB_POOL_MIN", 5, 1, 1000)
    hi = _bounded(env, "FORMCHECK_DB_POOL_MAX", 20, 1, 1000)
    if hi < lo:
        raise SettingsError(f"FORMCHECK_DB_POOL_MAX ({hi}) must be at least FORMCHECK_DB_POOL_MIN ({lo})")
    fmt = env.get("FORMCHECK_LOG_FORMAT", "auto").strip().lower() or "auto"
    if fmt not in ("auto", "json", "text"):
        raise SettingsError(f"FORMCHECK_LOG_FORMAT must be auto, json or text, got {fmt!r}")
    origins = tuple(o.strip() for o in env.get("FORMCHECK_CORS_ORIGINS", "").split(",") if o.strip())
    return ServerSettings(
        data_dir=Path(data).expanduser(), database_url=url, db_pool_min=lo, db_pool_max=hi,
        rate_limit=_limit(env, "FORMCHECK_RATE_LIMIT", Limit(100, 900)),
        post_rate_limit=_limit(env, "FORMCHECK_POST_RATE_LIMIT", Limit(10, 60)),
        max_upload_mb=_bounded(env, "FORMCHECK_MAX_UPLOAD_MB", 200, 1, 100_000),
        max_duration_s=_bounded(env, "FORMCHECK_MAX_DURATION_S", 900, 1, 86_400),
        max_frames=_bounded(env, "FORMCHECK_MAX_FRAMES", 16, 1, 256),
        queue_max=_bounded(env, "FORMCHECK_QUEUE_MAX", 64, 1, 1_000_000),
        job_attempts=_bounded(env, "FORMCHECK_JOB_ATTEMPTS", 3, 1, 100),
        cors_origins=origins, open_mode=_flag(env, "FORMCHECK_OPEN"), log_format=fmt,
    )


def _seconds(env: dict[str, str], name: str, default: float, lo: float, hi: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not lo <= value <= hi:
        raise SettingsError(f"{name} must be {lo:g}..{hi:g} seconds, got {value:g}")
    return value


def _recommend(env: dict[str, str]) -> RecommendSettings:
    url = env.get("OPENAI_BASE_URL", "").strip() or DEFAULT_BASE_URL
    if not url.startswith(("http://", "https://")):
        raise SettingsError(f"OPENAI_BASE_URL must start with http:// or https://, got {redact(url)!r}")
    return RecommendSettings(
        api_key=env.get("OPENAI_API_KEY", "").strip() or None,
        model=env.get("OPENAI_MODEL", "").strip() or DEFAULT_MODEL,
        base_url=url.rstrip("/"),
        timeout_s=_seconds(env, "FORMCHECK_OPENAI_TIMEOUT_S", 20.0, 0.01, 600.0),
        retries=_bounded(env, "FORMCHECK_OPENAI_RETRIES", 2, 0, 10),
        backoff_s=_seconds(env, "FORMCHECK_OPENAI_BACKOFF_S", 0.5, 0.0, 60.0),
        ttl_s=_bounded(env, "FORMCHECK_RECOMMEND_TTL", 86400, 1, 365 * 86400),
        rate_limit=_limit(env, "FORMCHECK_RECOMMEND_RATE_LIMIT", Limit(10, 60)),
    )


def export(**values: str) -> None:
    """Set variables for this process and the processes it starts (``formcheck serve`` hands
    its options to uvicorn's worker processes this way; they ``load`` them back)."""
    os.environ.update(values)


def exported(name: str) -> bool:
    return name in os.environ


def load(env: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ if env is None else env)
    base = Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return Settings(
        cache_dir=base / "formcheck",
        workers=_bounded(env, "FORMCHECK_WORKERS", os.cpu_count() or 1, 1, 64),
        max_side=_int(env, "FORMCHECK_MAX_SIDE", 1280),
        cache_mb=max(1, _int(env, "FORMCHECK_CACHE_MB", 2048)),
        memory_cache_mb=max(1, _int(env, "FORMCHECK_MEMORY_CACHE_MB", 256)),
        redis_url=env.get("REDIS_URL") or None,
        cache_ttl_s=max(1, _int(env, "FORMCHECK_CACHE_TTL", 7 * 86400)),
        server=_server(env),
        recommend=_recommend(env),
        scheduler=_scheduler(env),
    )


def _scheduler(env: dict[str, str]) -> str | None:
    raw = env.get("FORMCHECK_SCHEDULER", "").strip()
    if not raw:
        return None
    if not re.match(r"^(tcp|tls|inproc|ucx|ws|wss)://\S+$", raw):
        raise SettingsError(f"FORMCHECK_SCHEDULER must be a Dask scheduler address like tcp://HOST:8786, got {raw!r}")
    return raw
