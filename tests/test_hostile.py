"""Hostile input against ``formcheck serve`` (a subprocess: real HTTP parsing, and a crash or a
hang shows): empty, random and truncated uploads, headers that lie (100,000 x 100,000 pixels,
10 hours), decompression-bomb images, 10,000 multipart parts, path traversal and control
characters in file names, wrong content types, ids that are not ours on every ``{id}`` route,
SQL metacharacters in every string field (SQLite and PostgreSQL).

Every one must be answered within ``ANSWER_S`` with a 4xx RFC 9457 problem (``detail`` says what
was expected and what came), and the server must keep serving: after each test ``/health`` is
200 and a valid request works (the last test analyzes a real clip to the end).
"""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from api_routes import fill, id_routes
from helpers import sse_events
from hostile_media import claim_video_duration, claim_video_size, jpeg_bomb, png_bomb
from serving import Served, create_key, server_env, serving

PROBLEM = "application/problem+json"
ANSWER_S = 30.0  # generous: the slowest answer here (a lying 16000x16000 header) takes ~2 s
CLIP = "squat_kaiakol_1.mp4"
SQL = ("'; DROP TABLE jobs; --", '" OR 1=1 --', "' OR '1'='1", "1; DELETE FROM api_keys", "%' UNION SELECT * FROM "
       "api_keys --", "\\'; SELECT pg_sleep(30); --", "') OR ('a'='a", "`; DROP TABLE jobs`")
IDS = ("not-a-uuid", "' OR 1=1 --", "00000000-0000-0000-0000-000000000000", "..", "%00", "\x00", "x" * 2000,
       "ümlaut", "1", "a b", "{job_id}", "$(id)")


@dataclass
class Hostile:
    srv: Served
    client: httpx.Client  # carries the key
    root: Path
    data: Path
    xdg: Path


@contextmanager
def _start(xdg: Path, root: Path, **extra: str) -> Iterator[Hostile]:
    env = server_env(xdg, root / "data", **extra)
    key = create_key(env, "hostile")
    with serving(env, root / "serve.log", root / "cwd") as srv, \
            httpx.Client(base_url=srv.url, headers=key, timeout=ANSWER_S * 2) as client:
        yield Hostile(srv, client, root, root / "data", xdg)


@pytest.fixture(scope="module")
def hostile(xdg_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hostile]:
    with _start(xdg_cache, tmp_path_factory.mktemp("hostile")) as h:
        yield h


@pytest.fixture(autouse=True)
def _keeps_serving(request: pytest.FixtureRequest) -> Iterator[None]:
    """After every test: the server is alive, /health is 200 and a valid request works."""
    h: Hostile | None = request.getfixturevalue("hostile") if "hostile" in request.fixturenames else None
    yield
    if h is None:
        return
    assert h.srv.alive(), f"the server died:\n{h.srv.log_tail()}"
    assert h.client.get("/health").status_code == 200
    listed = h.client.get("/v1/analyses")
    assert listed.status_code == 200 and isinstance(listed.json()["items"], list), listed.text


def answer(send: Callable[[], httpx.Response]) -> httpx.Response:
    t0 = time.monotonic()
    r = send()
    took = time.monotonic() - t0
    assert took < ANSWER_S, f"answered in {took:.1f} s: expected within {ANSWER_S:.0f} s"
    return r


def problem(r: httpx.Response, status: int | tuple[int, ...] | None = None, says: str = "") -> str:
    """A 4xx problem-details answer whose detail says what was expected; its detail."""
    assert 400 <= r.status_code < 500, f"expected a 4xx, got {r.status_code}: {r.text[:500]}"
    if status is not None:
        assert r.status_code in ((status,) if isinstance(status, int) else status), r.text[:500]
    assert r.headers["content-type"] == PROBLEM, r.headers
    body = r.json()
    assert body["status"] == r.status_code and body["title"], body
    detail = body["detail"]
    assert re.search(r"\bexpected\b|\bmust be\b|\bthe limit is\b", detail, re.IGNORECASE), \
        f"the detail says nothing of what was expected: {detail!r}"
    assert says in detail, f"expected {says!r} in {detail!r}"
    assert "/uploads/" not in detail and "Traceback" not in detail, detail  # no server paths or internals
    return str(detail)


def upload(h: Hostile, data: bytes, name: str = "video.mp4", **fields: str) -> httpx.Response:
    return answer(lambda: h.client.post("/v1/analyses", files={"file": (name, data, "video/mp4")}, data=fields))


def frames(h: Hostile, data: bytes, name: str, kind: str) -> httpx.Response:
    return answer(lambda: h.client.post("/v1/frames", files={"file": (name, data, kind)}))


def _frame(dev_dir: Path, ext: str, size: tuple[int, int] | None = None) -> bytes:
    cap = cv2.VideoCapture(str(dev_dir / CLIP))
    ok, img = cap.read()
    cap.release()
    assert ok
    return bytes(cv2.imencode(ext, img if size is None else cv2.resize(img, size))[1].tobytes())


# --- uploads ------------------------------------------------------------------------------------


def test_zero_byte_upload(hostile: Hostile) -> None:
    problem(upload(hostile, b""), 422, says="empty (0 bytes)")


def test_random_bytes_named_mp4(hostile: Hostile) -> None:
    detail = problem(upload(hostile, np.random.default_rng(6).bytes(200_000)), 422)
    assert "'video.mp4' could not be opened as a video" in detail


@pytest.mark.parametrize("cut", [0.5, 0.9, 4096, 40])
def test_truncated_mp4(hostile: Hostile, dev_dir: Path, cut: float) -> None:
    data = (dev_dir / CLIP).read_bytes()
    n = int(len(data) * cut) if cut < 1 else int(cut)
    problem(upload(hostile, data[:n]), 422, says="'video.mp4'")


@pytest.mark.parametrize(("width", "height", "says"), [
    (100_000, 100_000, "no frame could be decoded"),  # past what FFmpeg will allocate
    (16_000, 16_000, "claims 256000000 pixels per frame"),  # FFmpeg would decode it: refused by size
])
def test_mp4_claiming_a_giant_frame(hostile: Hostile, dev_dir: Path, width: int, height: int, says: str) -> None:
    lying = claim_video_size((dev_dir / CLIP).read_bytes(), width, height)
    problem(upload(hostile, lying), 422, says=says)


def test_mp4_claiming_ten_hours(hostile: Hostile, dev_dir: Path) -> None:
    lying = claim_video_duration((dev_dir / CLIP).read_bytes(), 10 * 3600)
    problem(upload(hostile, lying), 422, says="lasts 36000 s: the limit is 900 s")


# --- images -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "side"), [("png", 60_000), ("png", 30_000), ("jpeg", 60_000), ("jpeg", 30_000)])
def test_decompression_bomb_images(hostile: Hostile, dev_dir: Path, kind: str, side: int) -> None:
    small = _frame(dev_dir, ".jpg", (32, 24))
    bomb = png_bomb(side, side) if kind == "png" else jpeg_bomb(side, side, small)
    assert len(bomb) < 20_000  # a few KB claiming billions of pixels
    problem(frames(hostile, bomb, f"bomb.{kind}", f"image/{kind}"), 422, says=f"claims {side}x{side} pixels")
    ok = frames(hostile, _frame(dev_dir, ".png", (320, 240)), "fine.png", "image/png")  # the worker lives on
    assert ok.status_code == 200 and ok.json()["frames"][0]["pose_found"], ok.text[:300]


# --- multipart, names, content types --------------------------------------------------------------


@pytest.mark.parametrize("route", ["/v1/analyses", "/v1/frames"])
def test_ten_thousand_parts(hostile: Hostile, route: str) -> None:
    parts = [("file", ("video.mp4", b"\0" * 16, "video/mp4"))] + [(f"f{i}", (None, b"x")) for i in range(10_000)]
    r = answer(lambda: hostile.client.post(route, files=parts))  # type: ignore[arg-type]
    problem(r, 413, says="more than 1000 parts")


def _multipart(filename: bytes, content: bytes, name: bytes = b"file") -> tuple[bytes, str]:
    """A multipart body written by hand: the file name's bytes go on the wire as they are."""
    boundary = uuid.uuid4().hex
    body = (b"--" + boundary.encode() + b"\r\nContent-Disposition: form-data; name=\"" + name + b"\"; filename=\""
            + filename + b"\"\r\nContent-Type: video/mp4\r\n\r\n" + content + b"\r\n--" + boundary.encode()
            + b"--\r\n")
    return body, f"multipart/form-data; boundary={boundary}"


def _tree(root: Path, skip: tuple[Path, ...]) -> set[Path]:
    out = set()
    for dirpath, dirs, files in os.walk(root):
        here = Path(dirpath)
        dirs[:] = [d for d in dirs if here / d not in skip]
        out.update(here / f for f in (*dirs, *files))
    return out


def test_traversal_and_control_characters_in_file_names(hostile: Hostile, dev_dir: Path) -> None:
    h, marker = hostile, f"fc-evil-{uuid.uuid4().hex[:8]}"
    base = h.root.parent  # the session's temporary tree: the data dir, the XDG cache and every sibling
    names = [f"../../../../../../tmp/{marker}.mp4", f"..\\..\\..\\{marker}.mp4", f"/tmp/{marker}.mp4",
             f"../{marker}\x00.mp4", f"{marker}\x01\x07\x08\x1b[31m\x7f.mp4", f"....//....//{marker}.mp4",
             f"..%2f..%2f{marker}.mp4", f"{marker}/../../../x.mp4"]
    before = _tree(base, (h.data, h.xdg))
    clip = (dev_dir / CLIP).read_bytes()
    accepted = []
    for name in names:
        for content in (b"not a video at all", clip):
            body, ctype = _multipart(name.encode("utf-8"), content)
            r = answer(lambda body=body, ctype=ctype: h.client.post(  # type: ignore[misc]
                "/v1/analyses", content=body, headers={"content-type": ctype}))
            if content == clip:
                assert r.status_code in (200, 202), r.text[:300]  # a fine video whatever its name
                accepted.append((r.json()["id"], name))
            else:
                problem(r, 422, says="could not be opened as a video")
    for job_id, name in accepted:  # the name is data: shown back exactly as sent, never a path
        assert h.client.get(f"/v1/analyses/{job_id}").json()["filename"] == name
    after = _tree(base, (h.data, h.xdg))
    assert after == before, f"files appeared outside the data dir: {sorted(map(str, after - before))}"
    inside = [p.relative_to(h.data) for p in _tree(h.data, ()) if p.is_file()]
    assert all(p.parts[0] in ("uploads", "artifacts") or p.name.startswith("formcheck.sqlite3") for p in inside), inside
    strays = [p for p in (*Path("/tmp").iterdir(), *_tree(base, ())) if marker in p.name]
    assert not strays, strays


@pytest.mark.parametrize(("route", "body", "ctype", "expected"), [
    ("/v1/analyses", b'{"file": "squat.mp4"}', "application/json", "multipart/form-data"),
    ("/v1/analyses", b"just text", "text/plain", "multipart/form-data"),
    ("/v1/analyses", b"--x\r\n\r\n", "multipart/form-data", "multipart/form-data"),  # no boundary
    ("/v1/frames", b'{"image": "aGk="}', "application/json", "multipart/form-data"),
    ("/v1/frames", b"a=b", "application/x-www-form-urlencoded", "multipart/form-data"),
    ("/v1/recommendations", b"goal=strength", "application/x-www-form-urlencoded", "application/json"),
    ("/v1/recommendations", b"<goal>strength</goal>", "application/xml", "application/json"),
    ("/v1/recommendations", b"\xff\xfe{", "application/json", "application/json"),
])
def test_wrong_content_type(hostile: Hostile, route: str, body: bytes, ctype: str, expected: str) -> None:
    r = answer(lambda: hostile.client.post(route, content=body, headers={"content-type": ctype}))
    detail = problem(r, (400, 415, 422))
    assert expected in detail, detail


def test_an_image_where_a_video_goes_and_a_video_where_an_image_goes(hostile: Hostile, dev_dir: Path) -> None:
    problem(frames(hostile, (dev_dir / CLIP).read_bytes(), "clip.mp4", "video/mp4"), 415, says="JPEG or PNG")
    r = upload(hostile, b"GIF89a" + b"\0" * 64, name="x.gif")
    problem(r, 422, says="could not be opened as a video")


# --- ids and SQL ----------------------------------------------------------------------------------


def test_ids_that_are_not_ours_on_every_id_route(hostile: Hostile) -> None:
    for method, template in id_routes():
        for job_id in IDS:
            names = ("reps.png", "angles.csv", "annotated.mp4", "analysis.json", "../formcheck.sqlite3") \
                if "{name" in template else ("",)
            for name in names:
                path = fill(template, job_id, name)
                r = answer(lambda method=method, path=path: hostile.client.request(method, path))  # type: ignore[misc]
                problem(r, 404)
    r = answer(lambda: hostile.client.post("/v1/recommendations", json={"analysis_id": "not-a-uuid", "goal": "rehab"}))
    assert r.status_code == 404 and r.headers["content-type"] == PROBLEM and "not-a-uuid" in r.json()["detail"]


def sql_requests(h: Hostile, payload: str) -> list[tuple[str, httpx.Response]]:
    """``payload`` in every string field, key and parameter the API reads."""
    c, junk = h.client, b"\0\1\2 not a video"
    out = [
        ("exercise", upload(h, junk, exercise=payload)),
        ("fps", upload(h, junk, fps=payload)),
        ("filename", upload(h, junk, name=payload)),
        ("field name", answer(lambda: c.post("/v1/analyses", files={payload: ("a.mp4", junk, "video/mp4")}))),
        ("image name", answer(lambda: c.post("/v1/frames", files={payload: (payload, b"GIF89a", "image/gif")}))),
        ("limit", answer(lambda: c.get("/v1/analyses", params={"limit": payload}))),
        ("offset", answer(lambda: c.get("/v1/analyses", params={"offset": payload}))),
        ("path id", answer(lambda: c.get(fill("/v1/analyses/{job_id:str}", payload)))),
        ("delete id", answer(lambda: c.delete(fill("/v1/analyses/{job_id:str}", payload)))),
        ("key", answer(lambda: c.get("/v1/analyses", headers={"Authorization": f"Bearer fc_{payload}"}))),
    ]
    rec = {"analysis_id": payload, "goal": payload, "level": payload, "notes": payload}
    for field in rec:
        body = {"analysis_id": "0" * 20, "goal": "strength", field: payload}
        out.append((f"recommend {field}", answer(lambda body=body: c.post(  # type: ignore[misc]
            "/v1/recommendations", json=body))))
    out.append(("recommend key", answer(lambda: c.post("/v1/recommendations", json={payload: 1, "goal": "rehab"}))))
    out.append(("recommend analysis", answer(lambda: c.post("/v1/recommendations", json={
        "analysis": {"exercise": {"name": payload}, "reps": [{"faults": [payload]}]}, "goal": "strength"}))))
    return out


def _sql_survives(h: Hostile, dev_dir: Path) -> None:
    for payload in SQL:
        for what, r in sql_requests(h, payload):
            assert 400 <= r.status_code < 500, (what, payload, r.status_code, r.text[:300])
            assert r.headers["content-type"] == PROBLEM, (what, payload)
            # an unknown key is "no such key"; the recommendation route's 404 names the id only
            if r.status_code != 401 and not (what.startswith("recommend") and r.status_code == 404):
                problem(r)
    # a valid upload still works, and its name (the payload) is stored as data
    with open(dev_dir / CLIP, "rb") as f:
        r = h.client.post("/v1/analyses", files={"file": (SQL[0], f, "video/mp4")}, data={"exercise": "squat"})
    assert r.status_code in (200, 202), r.text[:300]
    assert h.client.get(f"/v1/analyses/{r.json()['id']}").json()["filename"] == SQL[0]


def test_sql_metacharacters_in_every_field_sqlite(hostile: Hostile, dev_dir: Path) -> None:
    _sql_survives(hostile, dev_dir)
    db = sqlite3.connect(f"file:{hostile.data / 'formcheck.sqlite3'}?mode=ro", uri=True)
    try:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"jobs", "api_keys"} <= tables, tables
        assert db.execute("SELECT count(*) FROM api_keys").fetchone()[0] == 1
    finally:
        db.close()


def test_sql_metacharacters_in_every_field_postgres(xdg_cache: Path, tmp_path: Path, dev_dir: Path,
                                                   pg_database: str) -> None:
    import asyncpg

    async def counts(url: str) -> tuple[int, int]:
        conn = await asyncpg.connect(url, timeout=5)
        try:
            keys = await conn.fetchval("SELECT count(*) FROM api_keys")
            return keys, await conn.fetchval("SELECT count(*) FROM jobs")
        finally:
            await conn.close()

    with _start(xdg_cache, tmp_path, DATABASE_URL=pg_database) as h:
        _sql_survives(h, dev_dir)
        assert h.client.get("/health").status_code == 200
    keys, jobs = asyncio.run(counts(pg_database))
    assert keys == 1 and jobs == 1, (keys, jobs)  # nothing dropped or deleted; only the valid upload added


# --- after all that -------------------------------------------------------------------------------


def test_a_real_clip_is_still_analyzed_to_the_end(hostile: Hostile, dev_dir: Path) -> None:
    with open(dev_dir / "pushup_kaiakol_2.mp4", "rb") as f:
        r = hostile.client.post("/v1/analyses", files={"file": ("pushup.mp4", f, "video/mp4")},
                                data={"exercise": "pushup"})
    assert r.status_code in (200, 202), r.text[:300]
    with hostile.client.stream("GET", f"/v1/analyses/{r.json()['id']}/events", timeout=240) as resp:
        events = sse_events(resp.iter_lines())
    assert events[-1][0] == "done", events[-1]
    assert events[-1][1]["result"]["rep_count"] >= 1
