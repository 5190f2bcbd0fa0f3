"""HTTP load test of ``formcheck serve``: many concurrent users on a realistic mix of requests.

Usage::

    python benchmarks/load.py [--url http://127.0.0.1:8000 | --start] [--users 100] [--duration 30]
                              [--key fc_...] [--video PATH ...] [--json OUT] [--markdown OUT]

``--start`` runs its own server (``formcheck serve`` on a free port, a fresh temporary data dir,
an API key from ``formcheck keys create``, rate limits raised out of the way unless
``--keep-limits``) and stops it on exit, errors and Ctrl-C included. The server inherits this
process's environment (``XDG_CACHE_HOME`` included: models and the result/frame caches live
there) minus ``DATABASE_URL`` (the jobs database is a fresh SQLite file).

Setup (not timed): upload the ``--video`` clips (default: two short dev clips) and wait until
their analyses are done (their ids are what the load reads); grab frames from the first clip,
resize them to 640x480 JPEG, post one once (the cached frame), and prepare distinct images for
the uncached posts: other frames, each with a noise patch unique to this run and post, so that
neither the byte cache nor the per-pixel cache of ``/v1/frames`` can answer them.

Load: ``--users`` virtual users for ``--duration`` seconds. Each deals itself a shuffled deck of
the mix (``--mix``; default 45% status polls, 10% analysis.json, 10% reps.png, 5% list, 15%
cached frame posts, 10% uncached frame posts, 5% uploads of a setup clip, which hit the
whole-result cache) and sleeps a random think time (``--think-ms``, default 1-2 s: a person
polling a job or opening a result; 10-50 ms turns the users into a flood, a stress test whose
latencies are set by queueing on two cores) between requests. At the
deadline no new request starts; requests in flight get ``--grace`` seconds, then are cut off
(reported as ``cut_off``, not as errors).

Each user has its own ``httpx.AsyncClient`` (HTTP/1.1, keep-alive, ``--timeout``) holding one
connection, as separate people would; ``--pools 1`` puts them all on one client whose pool has
``--users`` connections instead. That costs this client far more CPU: httpcore 1.0's pool
re-scans every connection for every queued request (O(connections x queued) per request,
encode/httpcore#1035): at 100 users, 3/4 of this client's CPU went there, ~18 ms per request,
and the client, not the server, was the bottleneck.

Latencies are measured here (request sent to body read) over 2xx responses, with the server's
own ``X-Response-Time`` beside them: the gap is queueing in the server's accept backlog and
event loop plus this client's own scheduling (``client loop lag`` is reported, since the client
shares the machine). Errors are non-2xx other than 429 plus transport failures; 429s (the rate
limit doing its job) are counted apart. Cache hit rate = X-Cache HIT / (HIT + MISS).

The verdict line checks p95 < 100 ms on status polls and cached result reads and zero errors.
Exit code 0 whether or not the targets are met (it is a benchmark); 2 on a usage error, 1 when
the setup fails (server not reachable or not ready, an analysis failed, ...), 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
DEV_DIR = Path(os.environ.get("FORMCHECK_EVAL_DIR") or REPO.parent / "shared" / "eval" / "dev")
DEFAULT_CLIPS = ("squat_kaiakol_1.mp4", "pushup_kaiakol_2.mp4")

# route -> (method, path as shown in the table)
ROUTES: dict[str, tuple[str, str]] = {
    "status": ("GET", "/v1/analyses/{id}"),
    "analysis_json": ("GET", "/v1/analyses/{id}/analysis.json"),
    "reps_png": ("GET", "/v1/analyses/{id}/reps.png"),
    "list": ("GET", "/v1/analyses?limit=20"),
    "frame_cached": ("POST", "/v1/frames (seen image)"),
    "frame_uncached": ("POST", "/v1/frames (new image)"),
    "upload": ("POST", "/v1/analyses (same clip)"),
}
DEFAULT_MIX = {"status": 45, "analysis_json": 10, "reps_png": 10, "list": 5, "frame_cached": 15,
               "frame_uncached": 10, "upload": 5}
TARGET_ROUTES = ("status", "analysis_json", "reps_png")  # status polls and cached result reads
TARGET_P95_MS = 100.0
FRAME_SIZE = (640, 480)
PREPARED_FRAMES = 200  # distinct images encoded during setup; more are made on demand (untimed)
WARM_FRAMES = 4  # concurrent new images posted during the setup, to warm every inference worker
PATCH = 24  # side of the noise patch that makes an image distinct, pixels


class SetupError(Exception):
    """The run cannot start: the message says why (exit code 1)."""


# --------------------------------------------------------------------------- measurements


@dataclass(slots=True)
class Sample:
    route: str
    status: int | None  # None: no response (timeout, connection error)
    ms: float  # client-side, request sent to body read
    server_ms: float | None  # X-Response-Time
    cache: str | None  # X-Cache
    error: str | None = None  # the exception's type name, or the status and a detail excerpt


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default); None for no values."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def parse_ms(raw: str | None) -> float | None:
    """``X-Response-Time: 12.3ms`` -> 12.3."""
    if not raw:
        return None
    try:
        return float(raw.strip().removesuffix("ms"))
    except ValueError:
        return None


def _r(x: float | None, nd: int = 1) -> float | None:
    return None if x is None else round(x, nd)


def summarize_route(samples: Sequence[Sample], elapsed_s: float) -> dict[str, Any]:
    ok = [s for s in samples if s.status is not None and 200 <= s.status < 300]
    limited = sum(1 for s in samples if s.status == 429)
    errors = [s for s in samples if s.status is None or (s.status != 429 and not 200 <= s.status < 300)]
    ms = [s.ms for s in ok]
    server = [s.server_ms for s in ok if s.server_ms is not None]
    statuses = Counter(str(s.status) if s.status is not None else (s.error or "no response") for s in samples)
    return {
        "requests": len(samples), "ok": len(ok), "limited": limited, "errors": len(errors),
        "rps": _r(len(samples) / elapsed_s if elapsed_s > 0 else 0.0),
        "p50_ms": _r(percentile(ms, 50)), "p95_ms": _r(percentile(ms, 95)), "p99_ms": _r(percentile(ms, 99)),
        "max_ms": _r(max(ms) if ms else None),
        "server_p50_ms": _r(percentile(server, 50)), "server_p95_ms": _r(percentile(server, 95)),
        "hits": sum(1 for s in samples if s.cache == "HIT"), "misses": sum(1 for s in samples if s.cache == "MISS"),
        "statuses": dict(sorted(statuses.items())),
        "error_examples": sorted({e.error or str(e.status) for e in errors})[:5],
    }


def summarize(samples: Sequence[Sample], elapsed_s: float, routes: Sequence[str]) -> dict[str, Any]:
    """The report's ``routes`` and ``overall`` parts from raw samples."""
    by_route = {name: summarize_route([s for s in samples if s.route == name], elapsed_s) for name in routes}
    every = summarize_route(samples, elapsed_s)
    hits, misses = every["hits"], every["misses"]
    overall = {
        "requests": every["requests"], "ok": every["ok"], "throughput_rps": every["rps"],
        "errors": every["errors"], "error_rate": round(every["errors"] / every["requests"], 4)
        if every["requests"] else 0.0, "limited": every["limited"],
        "cache_hits": hits, "cache_misses": misses,
        "cache_hit_rate": round(hits / (hits + misses), 3) if hits + misses else None,
        "p50_ms": every["p50_ms"], "p95_ms": every["p95_ms"], "p99_ms": every["p99_ms"],
        "statuses": every["statuses"],
    }
    return {"routes": by_route, "overall": overall}


def verdict(report: dict[str, Any]) -> dict[str, Any]:
    """Targets: p95 < 100 ms on status polls and cached result reads; zero errors other than 429."""
    missed: list[str] = []
    routes = report["routes"]
    for name in TARGET_ROUTES:
        if name not in routes:
            continue
        p95 = routes[name]["p95_ms"]
        if p95 is None:
            missed.append(f"{name}: no successful request to measure")
        elif p95 >= TARGET_P95_MS:
            missed.append(f"{name} p95 {p95:.0f} ms >= {TARGET_P95_MS:.0f} ms")
    errors = report["overall"]["errors"]
    if errors:
        kinds = Counter()
        for name, r in routes.items():
            for key, n in r["statuses"].items():
                if not (key.isdigit() and (200 <= int(key) < 300 or int(key) == 429)):
                    kinds[f"{name} {key}"] += n
        missed.append(f"{errors} errors ({', '.join(f'{k} x{n}' for k, n in kinds.most_common(4))})")
    ok = not missed
    limited = report["overall"]["limited"]
    text = ("targets met: p95 < 100 ms on status and cached reads, no errors" if ok
            else "targets MISSED: " + "; ".join(missed))
    if limited:
        text += f" ({limited} deliberate 429s)"
    return {"ok": ok, "missed": missed, "text": text}


def _cell(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def _cpu_line(cpu: dict[str, float | None] | None) -> str:
    if not cpu:
        return ""
    parts = [f"this client {_cell(cpu.get('client'))}"]
    if cpu.get("server_api") is not None:
        parts += [f"server API process(es) {_cell(cpu['server_api'])}",
                  f"inference workers {_cell(cpu.get('server_workers'))}"]
    parts.append(f"everything else on the machine {_cell(cpu.get('others'))}")
    return (f"CPU seconds during the load ({_cell(cpu.get('capacity'))} available over {_cell(cpu.get('wall'))} s): "
            + ", ".join(parts) + ".")


def _little(m: dict[str, Any], o: dict[str, Any]) -> str:
    """Little's law for the closed loop: each user waits for its answer, then thinks."""
    if not o["throughput_rps"]:
        return ""
    think_ms = (m["think_ms"][0] + m["think_ms"][1]) / 2
    cycle_ms = m["users"] / o["throughput_rps"] * 1000
    return (f"Closed loop (Little's law): {m['users']} users / {o['throughput_rps']:.1f} req/s = one request per "
            f"user every {cycle_ms:.0f} ms, of which {think_ms:.0f} ms thinking: a mean response of "
            f"~{max(0.0, cycle_ms - think_ms):.0f} ms: whatever the server cannot complete at once waits in "
            "its queues, so with more users this grows, not the throughput.")


def markdown(report: dict[str, Any]) -> str:
    m, o = report["meta"], report["overall"]
    lines = [
        "## formcheck load test",
        "",
        f"{m['users']} users for {m['duration_s']:g} s (think {m['think_ms'][0]:g}-{m['think_ms'][1]:g} ms), "
        f"{m['server']}, {m['cpus']} CPUs; rate limits {m['limits']}.",
        "",
        "| route | requests | req/s | p50 ms | p95 ms | p99 ms | server p50 | server p95 | 429 | errors "
        "| cache HIT/MISS |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in report["routes"].items():
        method, path = ROUTES[name]
        cache = f"{r['hits']}/{r['misses']}" if r["hits"] or r["misses"] else "-"
        lines.append(f"| {name}: {method} {path} | {r['requests']} | {r['rps']:.1f} | {_cell(r['p50_ms'])} "
                     f"| {_cell(r['p95_ms'])} | {_cell(r['p99_ms'])} | {_cell(r['server_p50_ms'])} "
                     f"| {_cell(r['server_p95_ms'])} | {r['limited']} | {r['errors']} | {cache} |")
    rate = "-" if o["cache_hit_rate"] is None else f"{o['cache_hit_rate'] * 100:.1f}%"
    lines += [
        f"| **all** | {o['requests']} | {o['throughput_rps']:.1f} | {_cell(o['p50_ms'])} | {_cell(o['p95_ms'])} "
        f"| {_cell(o['p99_ms'])} | | | {o['limited']} | {o['errors']} | {o['cache_hits']}/{o['cache_misses']} |",
        "",
        f"Throughput {o['throughput_rps']:.1f} req/s over {m['elapsed_s']:.1f} s; errors {o['errors']} "
        f"({o['error_rate'] * 100:.2f}%); 429 {o['limited']}; cache hit rate {rate}; "
        f"{m['cut_off']} requests cut off at the hard stop.",
        f"Client-side ms are over 2xx responses (request sent to body read); server = X-Response-Time. "
        f"Client loop lag p50/p95/max {_cell(m['loop_lag_ms']['p50'])}/{_cell(m['loop_lag_ms']['p95'])}/"
        f"{_cell(m['loop_lag_ms']['max'])} ms; load average {m['loadavg_before']} before, "
        f"{m['loadavg_after']} after. Setup {m['setup_s']:g} s; its warm-up new-image posts took "
        f"{', '.join(f'{x:.0f}' for x in m['warmup_frame_ms']) or '(skipped)'} ms.",
        _cpu_line(m.get("cpu_s")),
        _little(m, o),
        "",
        f"**Verdict:** {report['verdict']['text']}",
    ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- images and clips


def grab_frames(video: Path, count: int) -> list[Any]:
    """``count`` frames spread over the clip, each resized to 640x480 (BGR arrays)."""
    import cv2

    cap = cv2.VideoCapture(str(video))
    try:
        frames = []
        ok, img = cap.read()
        while ok:
            frames.append(img)
            ok, img = cap.read()
    finally:
        cap.release()
    if not frames:
        raise SetupError(f"could not read any frame from {video} with OpenCV")
    step = len(frames) / count
    picked = [frames[min(len(frames) - 1, int(i * step))] for i in range(count)]
    return [cv2.resize(f, FRAME_SIZE, interpolation=cv2.INTER_AREA) for f in picked]


def jpeg(img: Any) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise SetupError("OpenCV could not encode a JPEG")
    return buf.tobytes()


class FramePool:
    """Distinct JPEGs for uncached posts: base frame ``i % n`` with a noise patch drawn from
    (run nonce, i) in its top-left corner, so every image differs in its pixels."""

    def __init__(self, bases: list[Any], nonce: int, prepare: int) -> None:
        self.bases, self.nonce, self.next_index = bases, nonce, 0
        self.ready: list[bytes] = [self.make(i) for i in range(prepare)]
        self.ready.reverse()
        self.next_index = prepare

    def make(self, i: int) -> bytes:
        import numpy as np

        img = self.bases[i % len(self.bases)].copy()
        rng = np.random.default_rng([self.nonce, i])
        img[:PATCH, :PATCH] = rng.integers(0, 256, (PATCH, PATCH, 3), dtype=np.uint8)
        return jpeg(img)

    async def take(self) -> bytes:
        if self.ready:
            return self.ready.pop()
        i = self.next_index
        self.next_index += 1
        return await asyncio.to_thread(self.make, i)


def fresh_clip(video: Path, nonce: int, i: int) -> bytes:
    """``video`` re-encoded (mp4v) with a noise patch from (nonce, i) on every frame: a new file
    and new pixels, so neither the whole-result cache nor the frame cache can answer it."""
    import cv2
    import numpy as np

    cap = cv2.VideoCapture(str(video))
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    rng = np.random.default_rng([nonce, i, 1])
    patch = rng.integers(0, 256, (PATCH, PATCH, 3), dtype=np.uint8)
    with tempfile.TemporaryDirectory(prefix="formcheck-load-") as tmp:
        out_path = Path(tmp) / "fresh.mp4"
        writer = None
        try:
            ok, img = cap.read()
            while ok:
                if writer is None:
                    h, w = img.shape[:2]
                    writer = cv2.VideoWriter(str(out_path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
                img[:PATCH, :PATCH] = patch
                writer.write(img)
                ok, img = cap.read()
        finally:
            cap.release()
            if writer is not None:
                writer.release()
        return out_path.read_bytes()


# --------------------------------------------------------------------------- CPU accounting


def _proc_cpu(group: int, api_workers: int) -> dict[str, float]:
    """CPU seconds of the processes in process group ``group`` (the server's session) by role:
    the API process(es) (the group leader; with ``serve --workers N>1`` also the leader's
    children, the leader then being uvicorn's supervisor) and the rest (inference workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {"api": 0.0, "inference": 0.0}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()  # state, ppid, pgrp, ..., [11] utime, [12] stime
        except OSError:
            continue  # gone meanwhile
        if int(fields[2]) != group:
            continue
        pid, ppid = int(stat.parent.name), int(fields[1])
        api = pid == group or (api_workers > 1 and ppid == group)
        out["api" if api else "inference"] += (int(fields[11]) + int(fields[12])) / tick
    return out


def _machine_busy() -> float | None:
    """CPU seconds the whole machine spent busy since boot (/proc/stat), all cores."""
    try:
        values = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    return (sum(values[:8]) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")  # minus idle and iowait


class CpuMeter:
    """CPU seconds used between ``start`` and ``stop`` by this client, the server started here
    (by role) and the machine as a whole; what remains is other work sharing the machine."""

    def __init__(self, server_group: int | None, api_workers: int = 1) -> None:
        self.group, self.api_workers = server_group, api_workers

    def _read(self) -> dict[str, float | None]:
        me = resource.getrusage(resource.RUSAGE_SELF)
        now: dict[str, float | None] = {"client": me.ru_utime + me.ru_stime, "machine": _machine_busy(),
                                        "wall": time.monotonic()}
        if self.group is not None:
            srv = _proc_cpu(self.group, self.api_workers)
            now["server_api"], now["server_workers"] = srv["api"], srv["inference"]
        return now

    def start(self) -> None:
        self.t0 = self._read()

    def stop(self) -> dict[str, float | None]:
        t1 = self._read()
        d = {k: None if t1[k] is None or self.t0.get(k) is None else round(t1[k] - self.t0[k], 1)  # type: ignore[operator]
             for k in t1}
        d["capacity"] = round((d["wall"] or 0.0) * (os.cpu_count() or 1), 1)
        known = [d.get(k) for k in ("client", "server_api", "server_workers")]
        d["others"] = (round(max(0.0, d["machine"] - sum(x for x in known if x is not None)), 1)
                       if d["machine"] is not None else None)
        return d


# --------------------------------------------------------------------------- the server


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``formcheck serve`` in its own session (process group), with a fresh data dir and key."""

    def __init__(self, keep_limits: bool, api_workers: int, ready_timeout: float, keep_data: bool) -> None:
        self.keep_limits, self.api_workers = keep_limits, api_workers
        self.ready_timeout, self.keep_data = ready_timeout, keep_data
        self.dir = Path(tempfile.mkdtemp(prefix="formcheck-load-"))
        self.data = self.dir / "data"
        self.log_path = self.dir / "server.log"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.key = ""
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("DATABASE_URL", "FORMCHECK_DATA_DIR", "FORMCHECK_OPEN")}
        self.env.update({"FORMCHECK_DATA_DIR": str(self.data), "PYTHONUNBUFFERED": "1",
                         "FORMCHECK_LOG_FORMAT": "json"})
        if not keep_limits:
            self.env.update({"FORMCHECK_RATE_LIMIT": "1000000/1m", "FORMCHECK_POST_RATE_LIMIT": "1000000/1m"})

    def _cli(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "api.cli", *args]

    def start(self) -> None:
        try:
            made = subprocess.run(self._cli("keys", "create", "--name", "load", "--data-dir", str(self.data)),
                                  cwd=REPO, env=self.env, capture_output=True, text=True, timeout=120,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise SetupError("'formcheck keys create' hung for 120 s") from None
        keys = [line.strip() for line in made.stdout.splitlines() if line.strip().startswith("fc_")]
        if made.returncode != 0 or not keys:
            raise SetupError(f"'formcheck keys create' failed (exit {made.returncode}): {made.stderr.strip()[-800:]}")
        self.key = keys[-1]
        log = open(self.log_path, "wb")  # noqa: SIM115 - the child holds it; closed in stop()
        self._log = log
        self.proc = subprocess.Popen(
            self._cli("serve", "--port", str(self.port), "--workers", str(self.api_workers)),
            cwd=REPO, env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)

    def wait_ready(self) -> None:
        """Until ``GET /health/ready`` is 200 from this server (its process still running)."""
        deadline = time.monotonic() + self.ready_timeout
        last = "no answer yet"
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise SetupError(f"the server exited with code {self.proc.returncode} before it was ready; "
                                     f"log tail ({self.log_path}):\n{self.log_tail()}")
                try:
                    r = client.get(self.url + "/health/ready")
                    if r.status_code == 200:
                        time.sleep(0.2)  # a server that failed to bind exits right after its startup
                        if self.proc.poll() is None:
                            return
                        continue
                    last = f"{r.status_code}: {r.text[:300]}"
                except httpx.HTTPError as exc:
                    last = f"{type(exc).__name__}: {exc}"
                time.sleep(0.25)
        raise SetupError(f"the server at {self.url} was not ready after {self.ready_timeout:.0f} s "
                         f"(last: {last}); log tail ({self.log_path}):\n{self.log_tail()}")

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_bytes()[-n:].decode(errors="replace") or "(empty)"
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """SIGTERM to the server's process group (its inference workers included), SIGKILL after 15 s."""
        proc = self.proc
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of the group
            proc.wait()
            self._log.close()
            self.proc = None
        if not self.keep_data:
            shutil.rmtree(self.dir, ignore_errors=True)


# --------------------------------------------------------------------------- setup and load


@dataclass
class Fixtures:
    """What the setup leaves for the load: finished analyses, clips and images."""

    ids: list[str]
    clips: list[tuple[str, bytes]]
    cached_frame: bytes
    frames: FramePool
    fresh: tuple[Path, int] | None = None  # (clip, nonce) with --fresh-uploads
    warm_ms: list[float] = field(default_factory=list)  # the warm-up's uncached frame posts
    fresh_count: int = 0


def _detail(r: httpx.Response) -> str:
    try:
        body = r.json()
        return str(body.get("detail") or body)[:300] if isinstance(body, dict) else str(body)[:300]
    except ValueError:
        return r.text[:300]


def _check(r: httpx.Response, what: str) -> None:
    if r.status_code == 401:
        raise SetupError(f"{what}: 401 {_detail(r)} (pass --key fc_..., or use --start)")
    if r.status_code == 429:
        raise SetupError(f"{what}: rate limited (429, Retry-After {r.headers.get('Retry-After')} s); raise the "
                         "server's FORMCHECK_RATE_LIMIT / FORMCHECK_POST_RATE_LIMIT or wait")
    if not 200 <= r.status_code < 300:
        raise SetupError(f"{what}: {r.status_code} {_detail(r)}")


async def _analyze(client: httpx.AsyncClient, name: str, data: bytes, timeout: float) -> str:
    r = await client.post("/v1/analyses", files={"file": (name, data, "video/mp4")})
    _check(r, f"uploading {name}")
    job_id = str(r.json()["id"])
    deadline = time.monotonic() + timeout
    while True:
        r = await client.get(f"/v1/analyses/{job_id}")
        _check(r, f"polling analysis {job_id} of {name}")
        body = r.json()
        if body["status"] == "done":
            return job_id
        if body["status"] == "failed":
            raise SetupError(f"the analysis of {name} failed: {body.get('error')}")
        if time.monotonic() > deadline:
            raise SetupError(f"the analysis of {name} was not done after {timeout:.0f} s "
                             f"(status {body['status']}, progress {body.get('progress')})")
        await asyncio.sleep(0.5)


async def setup(clients: Sequence[httpx.AsyncClient], args: argparse.Namespace, nonce: int) -> Fixtures:
    client = clients[0]
    try:
        r = await client.get("/health/ready", timeout=10.0)
    except httpx.HTTPError as exc:
        raise SetupError(f"cannot reach the server at {client.base_url}: {type(exc).__name__}: {exc}") from None
    if r.status_code != 200:
        raise SetupError(f"the server at {client.base_url} is not ready: {r.status_code} {r.text[:300]}")
    clips = [(p.name, p.read_bytes()) for p in args.video]
    ids = list(await asyncio.gather(*(_analyze(client, n, d, args.setup_timeout) for n, d in clips)))
    # The images: one frame posted now (the cached one), the others as bases for distinct images.
    images = await asyncio.to_thread(grab_frames, args.video[0], 9)
    cached = jpeg(images[0])
    r = await client.post("/v1/frames", files={"image": ("cached.jpg", cached, "image/jpeg")})
    _check(r, "posting the frame to cache")
    pool = await asyncio.to_thread(FramePool, images[1:], nonce, PREPARED_FRAMES)
    warm_ms: list[float] = []
    if args.warmup:
        # Each inference worker builds its image-mode model on its first new image (seconds):
        # a few concurrent distinct images, so that cold start is not in the load's numbers.
        async def post_new(i: int) -> None:
            data = await pool.take()
            t = time.perf_counter()
            r = await clients[i % len(clients)].post("/v1/frames",
                                                     files={"image": (f"warm{i}.jpg", data, "image/jpeg")})
            _check(r, "posting a warm-up frame")
            warm_ms.append(round((time.perf_counter() - t) * 1000, 1))

        await asyncio.gather(*(post_new(i) for i in range(WARM_FRAMES)))
    return Fixtures(ids, clips, cached, pool, (args.video[0], nonce) if args.fresh_uploads else None,
                    warm_ms=warm_ms)


async def request(client: httpx.AsyncClient, fx: Fixtures, route: str, rng: random.Random) -> Sample:
    """One request of ``route``; preparing its body (a new image, a fresh clip) is not timed."""
    files: dict[str, tuple[str, bytes, str]] | None = None
    if route == "status":
        method, url = "GET", f"/v1/analyses/{rng.choice(fx.ids)}"
    elif route == "analysis_json":
        method, url = "GET", f"/v1/analyses/{rng.choice(fx.ids)}/analysis.json"
    elif route == "reps_png":
        method, url = "GET", f"/v1/analyses/{rng.choice(fx.ids)}/reps.png"
    elif route == "list":
        method, url = "GET", "/v1/analyses?limit=20"
    elif route == "frame_cached":
        method, url, files = "POST", "/v1/frames", {"image": ("frame.jpg", fx.cached_frame, "image/jpeg")}
    elif route == "frame_uncached":
        method, url, files = "POST", "/v1/frames", {"image": ("new.jpg", await fx.frames.take(), "image/jpeg")}
    elif route == "upload":
        if fx.fresh is not None:
            fx.fresh_count += 1
            data = await asyncio.to_thread(fresh_clip, fx.fresh[0], fx.fresh[1], fx.fresh_count)
            files = {"file": ("fresh.mp4", data, "video/mp4")}
        else:
            name, data = rng.choice(fx.clips)
            files = {"file": (name, data, "video/mp4")}
        method, url = "POST", "/v1/analyses"
    else:
        raise ValueError(f"unknown route {route!r}")
    t0 = time.perf_counter()
    try:
        r = await client.request(method, url, files=files)
    except httpx.HTTPError as exc:
        return Sample(route, None, (time.perf_counter() - t0) * 1000, None, None, type(exc).__name__)
    ms = (time.perf_counter() - t0) * 1000
    error = None if 200 <= r.status_code < 300 or r.status_code == 429 else f"{r.status_code} {_detail(r)[:120]}"
    return Sample(route, r.status_code, ms, parse_ms(r.headers.get("x-response-time")), r.headers.get("x-cache"),
                  error)


def deck(mix: dict[str, int]) -> list[str]:
    """The mix as cards (weights reduced by their gcd): a shuffled deck per round gives each user
    the exact proportions and every route within one round."""
    g = math.gcd(*mix.values())
    return [name for name, w in mix.items() for _ in range(w // g)]


async def user(client: httpx.AsyncClient, fx: Fixtures, mix: dict[str, int], think: tuple[float, float],
               deadline: float, rng: random.Random, out: list[Sample], inflight: list[int]) -> None:
    cards: list[str] = []
    await asyncio.sleep(rng.uniform(0, think[1]))  # users do not all start on the same tick
    while time.monotonic() < deadline:
        if not cards:
            cards = deck(mix)
            rng.shuffle(cards)
        route = cards.pop()
        inflight[0] += 1
        try:
            out.append(await request(client, fx, route, rng))
        finally:
            inflight[0] -= 1
        await asyncio.sleep(rng.uniform(*think))


async def loop_lag(stop: asyncio.Event, out: list[float], every_s: float = 0.05) -> None:
    """How late this process's event loop wakes up: client-side latency includes it."""
    while not stop.is_set():
        t0 = time.perf_counter()
        await asyncio.sleep(every_s)
        out.append(max(0.0, (time.perf_counter() - t0 - every_s) * 1000))


async def load(clients: Sequence[httpx.AsyncClient], fx: Fixtures, args: argparse.Namespace) -> dict[str, Any]:
    samples: list[Sample] = []
    inflight = [0]
    lags: list[float] = []
    stop = asyncio.Event()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    think = (args.think_ms[0] / 1000, args.think_ms[1] / 1000)
    t0 = time.monotonic()
    deadline = t0 + args.duration
    lag_task = asyncio.create_task(loop_lag(stop, lags))
    tasks = [asyncio.create_task(user(clients[i % len(clients)], fx, args.mix, think, deadline,
                                      random.Random(seed + i), samples, inflight)) for i in range(args.users)]
    try:
        _, pending = await asyncio.wait(tasks, timeout=args.duration + args.grace)
        cut_off = inflight[0]
        elapsed = time.monotonic() - t0  # the deadline, plus the last requests' tail (at most --grace)
    finally:  # the hard stop, or an interruption: no user outlives the client
        stop.set()
        for task in (*tasks, lag_task):
            task.cancel()
        await asyncio.gather(*tasks, lag_task, return_exceptions=True)
    for task in tasks:
        if task not in pending and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]  # a bug in this script, not a server error
    report = summarize(samples, elapsed, list(args.mix))
    report["meta_load"] = {"elapsed_s": round(elapsed, 2), "cut_off": cut_off, "seed": seed,
                           "loop_lag_ms": {"p50": _r(percentile(lags, 50)), "p95": _r(percentile(lags, 95)),
                                           "max": _r(max(lags) if lags else None)}}
    return report


async def run(args: argparse.Namespace, url: str, key: str | None, meta: dict[str, Any],
              server_group: int | None = None) -> dict[str, Any]:
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)  # like Ctrl-C in asyncio.run
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    pools = min(args.pools or args.users, args.users)
    size = math.ceil(args.users / pools)
    limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
    meta["pools"] = {"clients": pools, "connections_each": size}
    tls = ssl.create_default_context()  # one for all the clients (each would load the CA bundle: ~50 ms)
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(httpx.AsyncClient(  # HTTP/1.1
            base_url=url, headers=headers, limits=limits, timeout=httpx.Timeout(args.timeout), verify=tls,
            http1=True, http2=False)) for _ in range(pools)]
        client = clients[0]
        nonce = random.randrange(1 << 62)
        t = time.monotonic()
        fx = await setup(clients, args, nonce)
        meta["setup_s"] = round(time.monotonic() - t, 1)
        meta["analyses"] = fx.ids
        meta["warmup_frame_ms"] = fx.warm_ms
        print(f"load: setup done in {meta['setup_s']} s (analyses {', '.join(fx.ids)}); "
              f"{args.users} users for {args.duration:g} s...", file=sys.stderr)
        meta["loadavg_before"] = [round(x, 2) for x in os.getloadavg()]
        meter = CpuMeter(server_group, args.api_workers)
        meter.start()
        report = await load(clients, fx, args)
        meta["cpu_s"] = meter.stop()
        meta["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
        with contextlib.suppress(httpx.HTTPError, ValueError):
            r = await client.get("/health/ready", timeout=10.0)
            meta["server_cache"] = r.json().get("checks", {}).get("cache")
    meta.update(report.pop("meta_load"))
    return report


# --------------------------------------------------------------------------- command line


def _mix(raw: str) -> dict[str, int]:
    mix: dict[str, int] = {}
    for part in raw.split(","):
        name, sep, weight = part.partition("=")
        name = name.strip()
        if not sep or name not in ROUTES or not weight.strip().isdigit():
            raise argparse.ArgumentTypeError(f"expected route=weight,... with routes {', '.join(ROUTES)}; "
                                             f"got {part!r}")
        mix[name] = int(weight)
    if not any(mix.values()):
        raise argparse.ArgumentTypeError("the mix needs a positive weight")
    return {k: v for k, v in mix.items() if v > 0}


def _positive(kind: type) -> Any:
    def parse(raw: str) -> Any:
        try:
            value = kind(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {raw!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {raw}")
        return value

    return parse


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="load.py", description=__doc__.split("\n")[0] if __doc__ else None)
    where = p.add_mutually_exclusive_group()
    where.add_argument("--url", default=None, help="a running server (default http://127.0.0.1:8000)")
    where.add_argument("--start", action="store_true", help="start a server of this checkout for the run")
    p.add_argument("--users", type=_positive(int), default=100, help="concurrent virtual users (default 100)")
    p.add_argument("--duration", type=_positive(float), default=30.0, help="seconds of load (default 30)")
    p.add_argument("--key", default=os.environ.get("FORMCHECK_KEY"),
                   help="API key for --url (default $FORMCHECK_KEY; none for a server run with --open)")
    p.add_argument("--video", type=Path, nargs="+", default=None,
                   help=f"clips to analyze in the setup and upload in the load (default {', '.join(DEFAULT_CLIPS)} "
                   f"from {DEV_DIR})")
    p.add_argument("--json", type=Path, default=None, help="write the report as JSON here")
    p.add_argument("--markdown", type=Path, default=None, help="write the markdown table here")
    p.add_argument("--think-ms", type=float, nargs=2, default=(1000.0, 2000.0), metavar=("MIN", "MAX"),
                   help="random pause between a user's requests (default 1000 2000: a person following a job; "
                   "10 50 floods the server instead, a stress test)")
    p.add_argument("--mix", type=_mix, default=dict(DEFAULT_MIX),
                   help="route=weight,... (default " + ",".join(f"{k}={v}" for k, v in DEFAULT_MIX.items()) + ")")
    p.add_argument("--fresh-uploads", action="store_true",
                   help="re-encode the clip with new pixels for every upload, so each one is analyzed (slow)")
    p.add_argument("--no-warmup", dest="warmup", action="store_false",
                   help=f"skip the setup's {WARM_FRAMES} new-image posts (the load then includes the workers' "
                   "cold start)")
    p.add_argument("--keep-limits", action="store_true", help="with --start: keep the default rate limits (429s)")
    p.add_argument("--api-workers", type=_positive(int), default=1, help="with --start: serve --workers N")
    p.add_argument("--keep-data", action="store_true", help="with --start: keep the data dir and server log")
    p.add_argument("--pools", type=_positive(int), default=None,
                   help="httpx.AsyncClient connection pools the users share (default: one per user, as separate "
                   "people have; 1: one pool of --users connections, whose bookkeeping, O(connections x queued "
                   "requests) per request in httpcore 1.0, then costs this client more CPU than the server)")
    p.add_argument("--timeout", type=_positive(float), default=30.0, help="per-request timeout, s (default 30)")
    p.add_argument("--grace", type=float, default=5.0, help="s for in-flight requests after the deadline")
    p.add_argument("--ready-timeout", type=_positive(float), default=180.0, help="s to wait for --start's server")
    p.add_argument("--setup-timeout", type=_positive(float), default=300.0, help="s to wait for each setup analysis")
    p.add_argument("--seed", type=int, default=None, help="seed of the users' choices")
    args = p.parse_args(argv)
    if args.video is None:
        args.video = [DEV_DIR / name for name in DEFAULT_CLIPS]
    missing = [str(v) for v in args.video if not v.is_file()]
    if missing:
        p.error(f"clip not found: {', '.join(missing)} (pass --video PATH, or set FORMCHECK_EVAL_DIR)")
    lo, hi = args.think_ms
    if not 0 <= lo <= hi:
        p.error(f"--think-ms expects 0 <= MIN <= MAX, got {lo:g} {hi:g}")
    if args.grace < 0:
        p.error("--grace must be >= 0")
    return args


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so the server started here is stopped either way (inside the
    event loop, ``run`` cancels its task instead)."""
    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    server: Server | None = None
    meta: dict[str, Any] = {"users": args.users, "duration_s": args.duration, "think_ms": list(args.think_ms),
                            "mix": args.mix, "videos": [str(v) for v in args.video], "cpus": os.cpu_count(),
                            "fresh_uploads": args.fresh_uploads, "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    with _sigterm_as_interrupt():
        try:
            if args.start:
                server = Server(args.keep_limits, args.api_workers, args.ready_timeout, args.keep_data)
                print(f"load: starting formcheck serve on {server.url} (data {server.data})...", file=sys.stderr)
                server.start()
                server.wait_ready()
                url, key = server.url, server.key
                meta["server"] = f"server started by load.py ({args.api_workers} API process(es))"
                meta["limits"] = "default (kept)" if args.keep_limits else "raised out of the way"
            else:
                url, key = args.url or "http://127.0.0.1:8000", args.key
                meta["server"] = f"server at {url}"
                meta["limits"] = "the server's own"
            meta["url"] = url
            group = server.proc.pid if server is not None and server.proc is not None else None
            report = asyncio.run(run(args, url, key, meta, group))
        except SetupError as exc:
            print(f"load: setup failed: {exc}", file=sys.stderr)
            return 1
        except (KeyboardInterrupt, asyncio.CancelledError):
            print("load: interrupted", file=sys.stderr)
            return 130
        finally:
            if server is not None:
                print("load: stopping the server...", file=sys.stderr)
                server.stop()
    report = {"meta": meta, **report}
    report["verdict"] = verdict(report)
    text = markdown(report)
    sys.stdout.write(text)
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.markdown is not None:
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
