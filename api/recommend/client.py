"""The model, through the official ``openai`` async client (any OpenAI-compatible server).

One call is ``chat.completions.create`` with a strict JSON-schema response format; the answer
is validated (``schema.check_answer``) before anyone sees it. The client's own retries are off
(``max_retries=0``): retries are ours, bounded (FORMCHECK_OPENAI_RETRIES), with exponential
backoff and jitter, honouring ``Retry-After`` when the wait fits in one call's timeout; so every
attempt is counted by outcome and timed. Only 429, 5xx, timeouts and connection failures are
retried; a 4xx, malformed JSON or an answer that fails validation ends the call at once.
FORMCHECK_OPENAI_TIMEOUT_S bounds each attempt as a whole: httpx's own timeout is per socket
operation, so a server that trickles its answer a byte at a time would never reach it.

Logs name the outcome, HTTP status, attempt and model, never the key, the prompt or the answer.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import TYPE_CHECKING, Any

from .. import metrics
from ..settings import RecommendSettings
from .prompt import messages
from .schema import RESPONSE_FORMAT, Answer, AnswerError, check_answer

if TYPE_CHECKING:
    import openai

log = logging.getLogger(__name__)

MAX_COMPLETION_TOKENS = 2000
RETRYABLE = frozenset({"rate_limited", "server_error", "timeout", "connection"})


class UpstreamFailed(Exception):
    """The model gave no usable answer; ``outcome`` says why (a metrics label)."""

    def __init__(self, outcome: str) -> None:
        super().__init__(outcome)
        self.outcome = outcome


class _Attempt(Exception):
    def __init__(self, outcome: str, status: int | None = None, retry_after: float | None = None,
                 detail: str = "") -> None:
        super().__init__(outcome)
        self.outcome, self.status, self.retry_after, self.detail = outcome, status, retry_after, detail


def _retry_after(headers: Any) -> float | None:
    """Seconds from ``retry-after-ms`` or ``retry-after`` (a number; an HTTP date is ignored)."""
    try:
        if headers.get("retry-after-ms"):
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
        if headers.get("retry-after"):
            return max(0.0, float(headers["retry-after"]))
    except (TypeError, ValueError):
        return None
    return None


class Upstream:
    def __init__(self, cfg: RecommendSettings) -> None:
        if not cfg.api_key:
            raise ValueError("an API key is needed to call the model")
        self.cfg = cfg
        self._client: openai.AsyncOpenAI | None = None

    @property
    def source(self) -> str:
        return f"openai:{self.cfg.model}"

    def _get(self) -> openai.AsyncOpenAI:
        if self._client is None:
            import openai  # ~0.5 s: only once a key is configured and a request needs it

            self._client = openai.AsyncOpenAI(api_key=self.cfg.api_key, base_url=self.cfg.base_url,
                                              timeout=self.cfg.timeout_s, max_retries=0)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def ask(self, inputs: dict[str, Any], goal: str, level: str,
                  notes: str) -> tuple[Answer, dict[str, int] | None]:
        """(validated answer, token usage) or UpstreamFailed after the bounded retries."""
        attempts = 1 + self.cfg.retries
        for attempt in range(1, attempts + 1):
            t0 = time.perf_counter()
            try:
                return await self._once(inputs, goal, level, notes)
            except _Attempt as failed:
                elapsed = time.perf_counter() - t0
                metrics.RECOMMEND_UPSTREAM.labels(failed.outcome).inc()
                log.warning("model call failed", extra={
                    "outcome": failed.outcome, "status": failed.status, "attempt": attempt, "attempts": attempts,
                    "model": self.cfg.model, "elapsed_ms": round(elapsed * 1000), "detail": failed.detail[:200]})
                if failed.outcome not in RETRYABLE or attempt == attempts:
                    raise UpstreamFailed(failed.outcome) from None
                delay = self.cfg.backoff_s * 2 ** (attempt - 1) * random.uniform(0.5, 1.0)
                if failed.retry_after is not None:
                    if failed.retry_after > self.cfg.timeout_s:  # not worth the wait: answer with the rules now
                        raise UpstreamFailed(failed.outcome) from None
                    delay = max(delay, failed.retry_after)
                await asyncio.sleep(delay)
        raise UpstreamFailed("error")  # not reached: the loop returns or raises

    async def _once(self, inputs: dict[str, Any], goal: str, level: str,
                    notes: str) -> tuple[Answer, dict[str, int] | None]:
        import openai

        client = self._get()
        t0 = time.perf_counter()
        try:
            async with asyncio.timeout(self.cfg.timeout_s):  # the whole call: httpx's timeout is per read
                resp = await client.chat.completions.create(
                    model=self.cfg.model, messages=messages(inputs, goal, level, notes),  # type: ignore[arg-type]
                    response_format=RESPONSE_FORMAT,  # type: ignore[arg-type]
                    max_completion_tokens=MAX_COMPLETION_TOKENS, timeout=self.cfg.timeout_s)
        except (openai.APITimeoutError, TimeoutError):
            raise _Attempt("timeout") from None
        except openai.APIConnectionError as exc:
            raise _Attempt("connection", detail=type(exc.__cause__ or exc).__name__) from None
        except openai.RateLimitError as exc:
            raise _Attempt("rate_limited", 429, _retry_after(exc.response.headers)) from None
        except openai.APIStatusError as exc:
            code = exc.status_code
            if code >= 500:
                raise _Attempt("server_error", code, _retry_after(exc.response.headers)) from None
            raise _Attempt("client_error", code) from None  # 400/401/403/404: retrying will not help
        except openai.OpenAIError as exc:  # e.g. a 200 whose body is not a completion
            raise _Attempt("malformed", detail=type(exc).__name__) from None
        finally:
            metrics.RECOMMEND_LATENCY.observe(time.perf_counter() - t0)
        choice = resp.choices[0] if resp.choices else None
        if choice is None:
            raise _Attempt("invalid", 200, detail="no choices in the completion")
        if choice.finish_reason == "length":
            raise _Attempt("truncated", 200, detail=f"stopped at {MAX_COMPLETION_TOKENS} tokens")
        if getattr(choice.message, "refusal", None):
            raise _Attempt("refused", 200)
        content = choice.message.content
        if not content:
            raise _Attempt("invalid", 200, detail="empty message content")
        try:
            answer = check_answer(content, inputs)
        except AnswerError as exc:
            raise _Attempt(exc.kind, 200, detail=str(exc)) from None
        metrics.RECOMMEND_UPSTREAM.labels("ok").inc()
        usage = None
        if resp.usage is not None:
            usage = {"prompt_tokens": resp.usage.prompt_tokens, "completion_tokens": resp.usage.completion_tokens,
                     "total_tokens": resp.usage.total_tokens}
            metrics.RECOMMEND_TOKENS.labels("prompt").inc(resp.usage.prompt_tokens or 0)
            metrics.RECOMMEND_TOKENS.labels("completion").inc(resp.usage.completion_tokens or 0)
        return answer, usage
