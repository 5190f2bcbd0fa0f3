"""Soak test of ``formcheck serve``: a steady mixed load for a long time, watching for drift.

Usage::

    python benchmarks/soak.py [--duration 600] [--warmup 60] [--window 60] [--users 20]
                              [--think-ms 500 1500] [--job-every 20] [--video PATH ...]
                              [--json OUT] [--markdown OUT]

It starts its own server and sets it up as ``benchmarks/load.py --start`` does (its ``Server``
and ``setup``: a free port, a fresh data dir and key, rate limits raised; the ``--video`` clips
analyzed, a frame cached, distinct images prepared), then for ``--duration`` seconds runs:

- ``--users`` virtual users on load.py's mix (status polls, cached ``analysis.json`` and
  ``reps.png``, the list, cached and new-image frame posts, uploads of a setup clip, which the
  whole-result cache answers), each pausing ``--think-ms`` between requests;
- a feeder: every ``--job-every`` seconds, the first clip re-encoded with new pixels (a job that
  must infer) is uploaded and then polled once a second until it ends.

The same load runs ``--warmup`` seconds first (default 60): the first requests of each kind
import and build what the server keeps (the chart renderer, the landmark-to-angle path, the
allocator's arenas), which is not drift; its requests and errors are reported, in a window of
their own, and memory growth is measured from its end. Every ``--window`` seconds after it the
soak notes the requests, errors and p95 latency of the window (all requests, and per route) and
the resident memory (RSS) of every server process: the API process(es) and the inference workers.
At the deadline no request starts; requests in flight get ``--grace`` seconds, then the jobs still
running get ``--drain`` seconds to end.

The report: requests served, errors by status (non-2xx other than 429, and transport failures),
p95 per window over time, the RSS of each server process after the setup, at start (after the
warm-up) and at the end, with its growth from start to end, CPU seconds by role, and jobs
submitted vs completed. ``--json`` and ``--markdown`` write it out too. Exit code 0 (a benchmark:
the figures are the result), 1 when the setup fails, 2 on a usage error, 130 on Ctrl-C or SIGTERM
(the server is stopped either way).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))  # load.py beside this file, however it is run

from load import (  # noqa: E402
    DEFAULT_CLIPS,
    DEFAULT_MIX,
    DEV_DIR,
    CpuMeter,
    Fixtures,
    Sample,
    Server,
    SetupError,
    deck,
    fresh_clip,
    parse_ms,
    percentile,
    request,
    setup,
    summarize_route,
)

from pipeline.pool import STILL_WORKER_NAME  # noqa: E402

JOB_ROUTES = ("job_upload", "job_status")  # the feeder's requests, reported beside the mix's
ERROR_EXAMPLES = 5


# --------------------------------------------------------------------------- server processes


def server_processes(group: int, api_workers: int) -> dict[int, tuple[str, int]]:
    """pid -> (role, RSS bytes) of the live processes in the server's process group. Roles: ``api``
    (the group leader; with ``--api-workers N>1`` the leader is uvicorn's ``supervisor`` and the
    API processes are its spawned children), ``inference`` (the pool workers the API processes
    spawned), ``still`` (each API process's still worker, by its process name), ``other``
    (multiprocessing's resource tracker, an ffmpeg rendering a video)."""
    found: dict[int, tuple[int, str, int]] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()  # state, ppid, pgrp, ... [21] rss pages
            if int(fields[2]) != group or fields[0] in ("Z", "X"):
                continue
            cmd = (stat.parent / "cmdline").read_bytes().decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        if (stat.parent / "comm").read_text().strip() == STILL_WORKER_NAME:
            cmd += " " + STILL_WORKER_NAME
        found[int(stat.parent.name)] = (int(fields[1]), cmd, int(fields[21]) * page)
    api = {group} if api_workers == 1 else {p for p, (pp, cmd, _) in found.items() if pp == group
                                            and "spawn_main" in cmd}
    out: dict[int, tuple[str, int]] = {}
    for pid, (ppid, cmd, rss) in found.items():
        if pid in api:
            role = "api"
        elif pid == group:
            role = "supervisor"
        elif ppid in api and "spawn_main" in cmd:
            role = "still" if cmd.endswith(STILL_WORKER_NAME) else "inference"
        else:
            role = "other"
        out[pid] = (role, rss)
    return out


def _mb(n: int | None) -> float | None:
    return None if n is None else round(n / (1 << 20), 1)


def _growth(start: int | None, end: int | None) -> float | None:
    return None if not start or end is None else round((end - start) / start * 100, 1)


def memory_report(start: dict[int, tuple[str, int]], end: dict[int, tuple[str, int]],
                  setup: dict[int, tuple[str, int]] | None = None) -> dict[str, Any]:
    """RSS per process at start and end (a process replaced meanwhile has one side only), and by role;
    ``setup``: the readings before the warm-up, shown beside them (growth is start to end)."""
    setup = setup if setup is not None else start
    procs = []
    for pid in sorted(set(start) | set(end)):
        role = (start.get(pid) or end[pid])[0]
        a, b = (start[pid][1] if pid in start else None), (end[pid][1] if pid in end else None)
        procs.append({"pid": pid, "role": role, "setup_mb": _mb(setup[pid][1]) if pid in setup else None,
                      "start_mb": _mb(a), "end_mb": _mb(b), "growth_pct": _growth(a, b)})
    totals = {}
    for role in sorted({r for r, _ in (*start.values(), *end.values())}):
        a = sum(rss for r, rss in start.values() if r == role)
        b = sum(rss for r, rss in end.values() if r == role)
        totals[role] = {"setup_mb": _mb(sum(rss for r, rss in setup.values() if r == role)),
                        "start_mb": _mb(a), "end_mb": _mb(b), "growth_pct": _growth(a, b),
                        "processes": [sum(1 for r, _ in start.values() if r == role),
                                      sum(1 for r, _ in end.values() if r == role)]}
    return {"processes": procs, "totals": totals}


def _rss_by_role(procs: dict[int, tuple[str, int]]) -> dict[str, float | None]:
    return {role: _mb(sum(rss for r, rss in procs.values() if r == role)) for role in ("api", "inference", "still")}


# --------------------------------------------------------------------------- the load


@dataclass
class Timed:
    t: float  # request start, seconds since the load began
    sample: Sample


@dataclass
class Jobs:
    """The feeder's jobs: every 202 answer, and how each ended."""

    submitted: list[str] = field(default_factory=list)
    ended: dict[str, dict[str, Any]] = field(default_factory=dict)
    refused: Counter[str] = field(default_factory=Counter)  # uploads not answered 202, by status

    def pending(self) -> list[str]:
        return [j for j in self.submitted if j not in self.ended]


async def _timed(client: httpx.AsyncClient, method: str, url: str, route: str,
                 **kw: Any) -> tuple[Sample, httpx.Response | None]:
    t0 = time.perf_counter()
    try:
        r = await client.request(method, url, **kw)
    except httpx.HTTPError as exc:
        return Sample(route, None, (time.perf_counter() - t0) * 1000, None, None, type(exc).__name__), None
    ms = (time.perf_counter() - t0) * 1000
    error = None if 200 <= r.status_code < 300 or r.status_code == 429 else f"{r.status_code} {r.text[:120]}"
    return Sample(route, r.status_code, ms, parse_ms(r.headers.get("x-response-time")), r.headers.get("x-cache"),
                  error), r


async def follow(client: httpx.AsyncClient, job_id: str, jobs: Jobs, out: list[Timed], t0: float,
                 until: float) -> None:
    """Poll a job once a second until it ends (or ``until``, monotonic)."""
    while time.monotonic() < until:
        start = time.monotonic() - t0
        sample, r = await _timed(client, "GET", f"/v1/analyses/{job_id}", "job_status")
        out.append(Timed(start, sample))
        if r is not None and r.status_code == 200 and r.json()["status"] in ("done", "failed"):
            body = r.json()
            jobs.ended[job_id] = {"status": body["status"], "error": body.get("error"), "at_s": round(start, 1)}
            return
        await asyncio.sleep(1.0)


async def feeder(client: httpx.AsyncClient, video: Path, every_s: float, deadline: float, out: list[Timed],
                 jobs: Jobs, t0: float, followers: list[asyncio.Task[None]]) -> None:
    """A fresh clip (new pixels: a real analysis) uploaded every ``every_s``, each followed to its end."""
    nonce, i = random.randrange(1 << 62), 0
    next_at = time.monotonic()
    while next_at < deadline:
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        next_at += every_s
        i += 1
        data = await asyncio.to_thread(fresh_clip, video, nonce, i)  # not timed
        start = time.monotonic() - t0
        sample, r = await _timed(client, "POST", "/v1/analyses", "job_upload",
                                 files={"file": (f"soak-{i}.mp4", data, "video/mp4")})
        out.append(Timed(start, sample))
        if r is not None and r.status_code == 202:
            job_id = str(r.json()["id"])
            jobs.submitted.append(job_id)
            followers.append(asyncio.create_task(follow(client, job_id, jobs, out, t0, math.inf)))
        else:
            jobs.refused[str(sample.status or sample.error)] += 1


async def user(client: httpx.AsyncClient, fx: Fixtures, think: tuple[float, float], deadline: float,
               rng: random.Random, out: list[Timed], t0: float) -> None:
    """load.py's user (a shuffled deck of the mix per round, a think time between requests), with
    each request's start time kept for the windows."""
    cards: list[str] = []
    await asyncio.sleep(rng.uniform(0, think[1]))
    while time.monotonic() < deadline:
        if not cards:
            cards = deck(DEFAULT_MIX)
            rng.shuffle(cards)
        start = time.monotonic() - t0
        out.append(Timed(start, await request(client, fx, cards.pop(), rng)))
        await asyncio.sleep(rng.uniform(*think))


async def sampler(group: int, api_workers: int, every_s: float, stop: asyncio.Event,
                  out: list[dict[int, tuple[str, int]]]) -> None:
    """The server's processes and their RSS at the start of every window."""
    while True:
        out.append(await asyncio.to_thread(server_processes, group, api_workers))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)
            return


async def soak(client: httpx.AsyncClient, users: Sequence[httpx.AsyncClient], fx: Fixtures,
               args: argparse.Namespace, group: int) -> dict[str, Any]:
    out: list[Timed] = []
    jobs = Jobs()
    followers: list[asyncio.Task[None]] = []
    snapshots: list[dict[int, tuple[str, int]]] = []
    stop = asyncio.Event()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    think = (args.think_ms[0] / 1000, args.think_ms[1] / 1000)
    meter = CpuMeter(group, args.api_workers)
    setup_procs = await asyncio.to_thread(server_processes, group, args.api_workers)
    t0 = time.monotonic() + args.warmup  # the measured run starts after the warm-up (times before it < 0)
    deadline = t0 + args.duration
    tasks = [asyncio.create_task(user(users[i], fx, think, deadline, random.Random(seed + i), out, t0))
             for i in range(args.users)]
    tasks.append(asyncio.create_task(feeder(client, args.video[0], args.job_every, deadline, out, jobs, t0,
                                            followers)))
    watch: asyncio.Task[None] | None = None
    try:
        await asyncio.sleep(max(0.0, t0 - time.monotonic()))
        start_procs = await asyncio.to_thread(server_processes, group, args.api_workers)
        meter.start()
        watch = asyncio.create_task(sampler(group, args.api_workers, args.window, stop, snapshots))
        _, late = await asyncio.wait(tasks, timeout=max(0.0, deadline - time.monotonic()) + args.grace)
        elapsed = time.monotonic() - t0
        end_procs = await asyncio.to_thread(server_processes, group, args.api_workers)
        cpu = meter.stop()
        if followers:
            await asyncio.wait(followers, timeout=args.drain)
    finally:
        stop.set()
        pending = [*tasks, *followers, *([watch] if watch is not None else [])]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    for task in tasks:
        if task not in late and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]  # a bug in this script, not a server error
    samples = [t for t in out if t.t < elapsed]  # the warm-up's too (negative times)
    return {
        "overall": overall([t.sample for t in samples], elapsed),
        "routes": {name: summarize_route([t.sample for t in samples if t.sample.route == name], elapsed)
                   for name in (*DEFAULT_MIX, *JOB_ROUTES)},
        "windows": windows(samples, snapshots, args.window, args.duration, elapsed, args.warmup, setup_procs),
        "memory": memory_report(start_procs, end_procs, setup_procs),
        "jobs": jobs_report(jobs),
        "meta_run": {"elapsed_s": round(elapsed, 1), "cut_off": len(late), "seed": seed, "cpu_s": cpu},
    }


# --------------------------------------------------------------------------- the report


def _is_error(s: Sample) -> bool:
    return s.status is None or (s.status != 429 and not 200 <= s.status < 300)


def overall(samples: Sequence[Sample], elapsed_s: float) -> dict[str, Any]:
    ok = [s.ms for s in samples if s.status is not None and 200 <= s.status < 300]
    errors = [s for s in samples if _is_error(s)]
    by_status = Counter(str(s.status) if s.status is not None else (s.error or "no response") for s in errors)
    return {"requests": len(samples), "ok": len(ok), "errors": len(errors), "errors_by_status": dict(by_status),
            "limited": sum(1 for s in samples if s.status == 429),
            "error_examples": sorted({s.error or str(s.status) for s in errors})[:ERROR_EXAMPLES],
            "throughput_rps": round(len(samples) / elapsed_s, 1) if elapsed_s > 0 else 0.0,
            "p50_ms": _ms(percentile(ok, 50)), "p95_ms": _ms(percentile(ok, 95)), "p99_ms": _ms(percentile(ok, 99))}


def _ms(x: float | None) -> float | None:
    return None if x is None else round(x, 1)


def windows(samples: Sequence[Timed], snapshots: Sequence[dict[int, tuple[str, int]]], width: float,
            duration: float, elapsed: float, warmup: float = 0.0,
            setup: dict[int, tuple[str, int]] | None = None) -> list[dict[str, Any]]:
    """Per ``width`` seconds of ``duration``: requests, errors, p95 of 2xx (all, and per route) and
    RSS by role at its start; the last window also holds the requests that ended in the grace.
    With a ``warmup`` (requests at negative times), a first row ``"warm-up"`` holds them, with the
    RSS after the setup."""
    out = []
    count = max(1, math.ceil(duration / width - 1e-9))
    spans: list[tuple[object, float, float, dict[int, tuple[str, int]] | None]] = []
    if warmup > 0:
        spans.append(("warm-up", -warmup, 0.0, setup))
    for k in range(count):
        lo, hi = k * width, (min((k + 1) * width, duration) if k < count - 1 else max(duration, elapsed))
        spans.append((k + 1, lo, hi, snapshots[k] if k < len(snapshots) else None))
    for name, lo, hi, snap in spans:
        inside = [t.sample for t in samples if lo <= t.t < hi]
        ok = [s for s in inside if s.status is not None and 200 <= s.status < 300]
        by_route = {}
        for route in sorted({s.route for s in ok}):
            by_route[route] = _ms(percentile([s.ms for s in ok if s.route == route], 95))
        out.append({"window": name, "from_s": round(lo, 1), "to_s": round(hi, 1), "requests": len(inside),
                    "errors": sum(1 for s in inside if _is_error(s)), "p95_ms": _ms(percentile([s.ms for s in ok], 95)),
                    "p95_ms_by_route": by_route, "rss_mb": _rss_by_role(snap) if snap is not None else None})
    return out


def jobs_report(jobs: Jobs) -> dict[str, Any]:
    ended = list(jobs.ended.values())
    return {"submitted": len(jobs.submitted), "completed": sum(1 for e in ended if e["status"] == "done"),
            "failed": sum(1 for e in ended if e["status"] == "failed"), "pending": len(jobs.pending()),
            "refused": dict(jobs.refused),
            "failures": sorted({str(e["error"]) for e in ended if e["status"] == "failed"})[:ERROR_EXAMPLES]}


def _cell(x: object) -> str:
    return "-" if x is None else f"{x:.1f}" if isinstance(x, float) else str(x)


def markdown(report: dict[str, Any]) -> str:
    m, o, j, mem = report["meta"], report["overall"], report["jobs"], report["memory"]
    errs = ", ".join(f"{k} x{n}" for k, n in sorted(o["errors_by_status"].items())) or "none"
    measured = [w for w in report["windows"] if w["window"] != "warm-up"]
    first, last = measured[0]["p95_ms"], measured[-1]["p95_ms"]
    lines = [
        "## formcheck soak test", "",
        f"{m['users']} users (think {m['think_ms'][0]:g}-{m['think_ms'][1]:g} ms) plus a new job every "
        f"{m['job_every_s']:g} s, for {m['warmup_s']:g} s of warm-up then {m['elapsed_s']:g} s; {m['server']}, "
        f"{m['cpus']} CPUs; "
        f"started {m['started']}, setup {m['setup_s']:g} s.", "",
        f"Requests served (warm-up included) {o['requests']} ({o['throughput_rps']:g} req/s), 2xx {o['ok']}, "
        f"errors {o['errors']} "
        f"({errs}), 429 {o['limited']}; p50/p95/p99 {_cell(o['p50_ms'])}/{_cell(o['p95_ms'])}/{_cell(o['p99_ms'])} ms; "
        f"{m['cut_off']} requests cut off at the hard stop. p95 of the first window {_cell(first)} ms, of the last "
        f"{_cell(last)} ms.",
        f"Jobs submitted {j['submitted']}, completed {j['completed']}, failed {j['failed']}, still pending "
        f"{j['pending']}" + (f"; uploads refused {j['refused']}" if j["refused"] else "") + ".", "",
        "| window | s | requests | errors | p95 ms | p95 status | p95 frame (new) | p95 job status "
        "| API RSS MB | workers RSS MB | still worker RSS MB |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for w in report["windows"]:
        r, rss = w["p95_ms_by_route"], w["rss_mb"] or {}
        lines.append(f"| {w['window']} | {w['from_s']:g}-{w['to_s']:g} | {w['requests']} | {w['errors']} "
                     f"| {_cell(w['p95_ms'])} | {_cell(r.get('status'))} | {_cell(r.get('frame_uncached'))} "
                     f"| {_cell(r.get('job_status'))} | {_cell(rss.get('api'))} | {_cell(rss.get('inference'))} "
                     f"| {_cell(rss.get('still'))} |")
    lines += ["", "| process | role | RSS after setup MB | at start MB | at end MB | growth % |",
              "|---:|---|---:|---:|---:|---:|"]
    for p in mem["processes"]:
        if p["role"] != "other":
            lines.append(f"| {p['pid']} | {p['role']} | {_cell(p.get('setup_mb'))} | {_cell(p['start_mb'])} "
                         f"| {_cell(p['end_mb'])} | {_cell(p['growth_pct'])} |")
    for role, t in mem["totals"].items():
        if role != "other":
            lines.append(f"| all ({t['processes'][0]} -> {t['processes'][1]}) | {role} | {_cell(t.get('setup_mb'))} "
                         f"| {_cell(t['start_mb'])} | {_cell(t['end_mb'])} | {_cell(t['growth_pct'])} |")
    cpu = m.get("cpu_s") or {}
    lines += ["", f"CPU seconds during the soak: API {_cell(cpu.get('server_api'))}, inference workers "
              f"{_cell(cpu.get('server_workers'))}, this client {_cell(cpu.get('client'))}, everything else "
              f"{_cell(cpu.get('others'))} (of {_cell(cpu.get('capacity'))} available), after the warm-up. RSS is "
              "sampled at the start of each window; start = after the warm-up, end = at the deadline; growth "
              "is start to end."]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- command line


async def run(args: argparse.Namespace, server: Server, meta: dict[str, Any]) -> dict[str, Any]:
    assert server.proc is not None
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    headers = {"Authorization": f"Bearer {server.key}"}
    limits = httpx.Limits(max_connections=4, max_keepalive_connections=4)
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(httpx.AsyncClient(
            base_url=server.url, headers=headers, limits=limits, timeout=httpx.Timeout(args.timeout)))
            for _ in range(args.users + 1)]  # one per user, as separate people; the last for the feeder
        t = time.monotonic()
        fx = await setup(clients[:1], argparse.Namespace(video=args.video, setup_timeout=args.setup_timeout,
                                                         warmup=True, fresh_uploads=False), random.randrange(1 << 62))
        meta["setup_s"] = round(time.monotonic() - t, 1)
        print(f"soak: setup done in {meta['setup_s']} s; {args.users} users and a job every {args.job_every:g} s "
              f"for {args.duration:g} s...", file=sys.stderr)
        report = await soak(clients[-1], clients[:-1], fx, args, server.proc.pid)
    meta.update(report.pop("meta_run"))
    return report


def _positive(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {raw!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {raw}")
    return value


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="soak.py", description=__doc__.split("\n")[0] if __doc__ else None)
    p.add_argument("--duration", type=_positive, default=600.0, help="seconds of load (default 600)")
    p.add_argument("--warmup", type=float, default=60.0,
                   help="seconds of the same load before the measured run; memory growth is from its end "
                   "(default 60; 0: none)")
    p.add_argument("--window", type=_positive, default=60.0, help="seconds per report window (default 60)")
    p.add_argument("--users", type=lambda s: int(_positive(s)), default=20, help="virtual users (default 20)")
    p.add_argument("--think-ms", type=float, nargs=2, default=(500.0, 1500.0), metavar=("MIN", "MAX"),
                   help="pause between a user's requests (default 500 1500)")
    p.add_argument("--job-every", type=_positive, default=20.0,
                   help="seconds between uploads of a fresh clip, each a real analysis (default 20)")
    p.add_argument("--video", type=Path, nargs="+", default=None,
                   help=f"setup clips; the first is also the feeder's (default {', '.join(DEFAULT_CLIPS)} "
                   f"from {DEV_DIR})")
    p.add_argument("--json", type=Path, default=None, help="write the report as JSON here")
    p.add_argument("--markdown", type=Path, default=None, help="write the markdown report here")
    p.add_argument("--api-workers", type=lambda s: int(_positive(s)), default=1, help="serve --workers N")
    p.add_argument("--grace", type=float, default=10.0, help="s for requests in flight after the deadline")
    p.add_argument("--drain", type=float, default=180.0, help="s for the submitted jobs to end after the deadline")
    p.add_argument("--timeout", type=_positive, default=30.0, help="per-request timeout, s (default 30)")
    p.add_argument("--ready-timeout", type=_positive, default=180.0, help="s to wait for the server")
    p.add_argument("--setup-timeout", type=_positive, default=300.0, help="s to wait for each setup analysis")
    p.add_argument("--keep-data", action="store_true", help="keep the server's data dir and log")
    p.add_argument("--seed", type=int, default=None, help="seed of the users' choices")
    args = p.parse_args(argv)
    if args.video is None:
        args.video = [DEV_DIR / name for name in DEFAULT_CLIPS]
    missing = [str(v) for v in args.video if not v.is_file()]
    if missing:
        p.error(f"clip not found: {', '.join(missing)} (pass --video PATH, or set FORMCHECK_EVAL_DIR)")
    if not 0 <= args.think_ms[0] <= args.think_ms[1]:
        p.error(f"--think-ms expects 0 <= MIN <= MAX, got {args.think_ms[0]:g} {args.think_ms[1]:g}")
    if args.window > args.duration:
        p.error(f"--window ({args.window:g} s) must not exceed --duration ({args.duration:g} s)")
    if args.grace < 0 or args.drain < 0 or args.warmup < 0:
        p.error("--grace, --drain and --warmup must be >= 0")
    return args


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    meta: dict[str, Any] = {"duration_s": args.duration, "warmup_s": args.warmup, "window_s": args.window,
                            "users": args.users,
                            "think_ms": list(args.think_ms), "job_every_s": args.job_every, "mix": DEFAULT_MIX,
                            "videos": [str(v) for v in args.video], "cpus": os.cpu_count(),
                            "server": f"server started by soak.py ({args.api_workers} API process(es))",
                            "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    server = Server(keep_limits=False, api_workers=args.api_workers, ready_timeout=args.ready_timeout,
                    keep_data=args.keep_data)
    with _sigterm_as_interrupt():
        try:
            print(f"soak: starting formcheck serve on {server.url} (data {server.data})...", file=sys.stderr)
            server.start()
            server.wait_ready()
            report = asyncio.run(run(args, server, meta))
        except SetupError as exc:
            print(f"soak: setup failed: {exc}", file=sys.stderr)
            return 1
        except (KeyboardInterrupt, asyncio.CancelledError):
            print("soak: interrupted", file=sys.stderr)
            return 130
        finally:
            print("soak: stopping the server...", file=sys.stderr)
            server.stop()
    report = {"meta": meta, **report}
    text = markdown(report)
    sys.stdout.write(text)
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.markdown is not None:
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
