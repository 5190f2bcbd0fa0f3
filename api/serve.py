"""``formcheck serve`` and ``formcheck keys create``.

``serve`` runs uvicorn with N API worker processes; each holds its share of the inference
processes (``FORMCHECK_WORKERS`` split between them, at least one each) and its own job
runner (jobs are claimed from the shared database, so none runs twice). With several API
processes, Prometheus samples go through ``PROMETHEUS_MULTIPROC_DIR`` (a fresh folder under
the data dir unless set), so ``/metrics`` is right whichever process answers.

SIGTERM or Ctrl-C: uvicorn stops accepting, open requests get ``GRACE_S``; running jobs get
the same to finish, then go back to the queue (the next start resumes them).
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path

from . import settings as S

GRACE_S = 10


def app_factory() -> object:
    """uvicorn's factory (one call per API worker process): settings from the environment."""
    from pipeline.infer import limit_malloc_arenas

    from . import logs
    from .app import create_app

    limit_malloc_arenas()  # a spawned API worker: before its threads
    cfg = S.load()
    logs.configure(cfg.server.log_format)
    return create_app(cfg)


def serve(host: str, port: int, api_workers: int, open_mode: bool) -> int:
    import uvicorn

    from pipeline.infer import limit_malloc_arenas

    limit_malloc_arenas()  # with one API worker this is the API process: before any thread starts
    cfg = S.load()
    if cfg.scheduler:  # an unreachable cluster fails here, in one line, before any process starts
        from pipeline import cluster

        cluster.connect(cfg.scheduler).close()
    per_process = max(1, cfg.workers // api_workers)
    S.export(FORMCHECK_WORKERS=str(per_process))
    if open_mode:
        S.export(FORMCHECK_OPEN="1")
        print("formcheck: --open: no API keys required (development only)", file=sys.stderr)
    if not S.exported("PROMETHEUS_MULTIPROC_DIR") and api_workers > 1:
        prom = cfg.server.data_dir / "prometheus"
        shutil.rmtree(prom, ignore_errors=True)
        prom.mkdir(parents=True)
        S.export(PROMETHEUS_MULTIPROC_DIR=str(prom))
    from . import logs

    logs.configure(cfg.server.log_format)
    uvicorn.run("api.serve:app_factory", factory=True, host=host, port=port, workers=api_workers,
                timeout_graceful_shutdown=GRACE_S, log_config=None, access_log=False, lifespan="on")
    return 0


async def add_key(srv: S.ServerSettings, name: str) -> str:
    """Create a key in the store ``srv`` names; the key itself (shown once)."""
    from .keys import new_key
    from .store import open_store

    srv.data_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(srv.database_url, srv.sqlite_path, 1, 2)
    await store.open()
    try:
        key, record = new_key(name)
        await store.add_key(record)
    finally:
        await store.close()
    return key


def create_key(name: str) -> int:
    srv = S.load().server
    key = asyncio.run(add_key(srv, name))
    where = S.redact(srv.database_url) if srv.database_url else str(Path(srv.sqlite_path))
    print(key)
    print(f"formcheck: created API key '{name}' in {where}; it is shown only now", file=sys.stderr)
    return 0
