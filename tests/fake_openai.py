"""A tiny OpenAI-compatible server on 127.0.0.1 for the recommendation tests (no internet).

``POST /v1/chat/completions`` answers by ``mode`` (or the next entry of ``script``):

- ``ok``: a completion whose content is ``answer`` (schema-valid JSON), with usage; after ``delay`` s
- ``429``: rate limited (``Retry-After: retry_after`` when set)
- ``500``: a server error
- ``sleep``: waits ``sleep_s`` (past the client's timeout) before answering
- ``malformed``: a completion whose content is not JSON
- ``invalid``: a completion whose JSON does not match the schema
- ``length``: a completion cut at the token limit

``calls`` counts the requests that reached it; ``requests`` keeps their JSON bodies and
``auth`` their Authorization headers. A stdlib ``ThreadingHTTPServer`` in a daemon thread.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ANSWER: dict[str, Any] = {
    "summary": "12 squat reps, range of motion 68-86 degrees (median 83); eccentric 0.7 s; no faults.",
    "cues": [
        {"priority": 1, "cue": "Lower over about 3 s", "why": "the eccentric took 0.7 s on every rep",
         "fault": None, "reps": []},
        {"priority": 2, "cue": "Match the depth of rep 1 on every rep", "why": "rep 9 moved 68 degrees, median 83",
         "fault": None, "reps": [1]},
    ],
    "prescription": {"sets": 4, "reps": 8, "tempo": "3-0-1", "load_change": "hold", "rest_s": 120},
    "progressions": ["pause squats"],
    "regressions": ["box squat"],
    "safety_flags": [],
}
USAGE = {"prompt_tokens": 812, "completion_tokens": 164, "total_tokens": 976}


class FakeOpenAI:
    def __init__(self) -> None:
        self.mode = "ok"
        self.script: list[str] = []
        self.answer: dict[str, Any] = ANSWER
        self.delay = 0.0
        self.sleep_s = 2.0
        self.retry_after: str | None = None
        self.calls = 0
        self.requests: list[dict[str, Any]] = []
        self.auth: list[str] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def reset(self, mode: str = "ok", *script: str) -> None:
        with self._lock:
            self.mode, self.script, self.calls = mode, list(script), 0
            self.requests.clear()
            self.auth.clear()
            self.answer, self.delay, self.retry_after = ANSWER, 0.0, None

    def start(self) -> FakeOpenAI:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if self.path.rstrip("/") != "/v1/chat/completions":
                    return self._send(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request"}})
                with fake._lock:
                    fake.calls += 1
                    fake.requests.append(json.loads(body))
                    fake.auth.append(self.headers.get("authorization", ""))
                    mode = fake.script.pop(0) if fake.script else fake.mode
                try:
                    self._answer(mode, fake.requests[-1])
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout): nothing to answer

            def _answer(self, mode: str, req: dict[str, Any]) -> None:
                if mode == "429":
                    headers = {"retry-after": fake.retry_after} if fake.retry_after is not None else {}
                    return self._send(429, {"error": {"message": "Rate limit reached", "type": "requests",
                                                      "code": "rate_limit_exceeded"}}, headers)
                if mode == "500":
                    return self._send(500, {"error": {"message": "The server had an error", "type": "server_error"}})
                if mode == "sleep":
                    time.sleep(fake.sleep_s)
                    return self._send(200, _completion(req, json.dumps(fake.answer)))
                if mode == "malformed":
                    return self._send(200, _completion(req, '{"summary": "cut off", "cues": [{"priority": 1,'))
                if mode == "invalid":
                    bad = {**fake.answer, "prescription": {"sets": "four", "reps": 8}}
                    return self._send(200, _completion(req, json.dumps(bad)))
                if mode == "length":
                    return self._send(200, _completion(req, '{"summary": "', finish="length"))
                assert mode == "ok", mode
                if fake.delay:
                    time.sleep(fake.delay)
                return self._send(200, _completion(req, json.dumps(fake.answer)))

            def _send(self, status: int, doc: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _completion(req: dict[str, Any], content: str, finish: str = "stop") -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()), "model": req.get("model"),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": None},
                     "finish_reason": finish, "logprobs": None}],
        "usage": USAGE,
    }
