"""What a recommendation is: the request's choices, the answer's shape, and its validation.

One shape for both sources: the rules recommender builds it and the model must return it
(``ANSWER_SCHEMA`` goes to the model as a strict JSON schema; ``check_answer`` validates
whatever comes back, field by field, and then against the analysis: a cue may only name
reps that exist and faults that were measured).

Tempo is ``eccentric-pause-concentric`` in seconds, e.g. ``3-1-1``.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Meta, Struct

GOALS = ("strength", "hypertrophy", "endurance", "mobility", "rehab")
LEVELS = ("beginner", "intermediate", "advanced")
DEFAULT_LEVEL = "intermediate"
MAX_NOTES = 500
TEMPO = r"^\d{1,2}(\.\d)?-\d{1,2}(\.\d)?-\d{1,2}(\.\d)?$"

Text = Annotated[str, Meta(min_length=1, max_length=400)]
Short = Annotated[str, Meta(min_length=1, max_length=200)]


class Cue(Struct, forbid_unknown_fields=True):
    priority: Annotated[int, Meta(ge=1, le=10)]
    cue: Short  # what to do, imperative
    why: Text  # the measurement behind it
    fault: str | None  # the fault it corrects (a name from the analysis) or None
    reps: Annotated[list[Annotated[int, Meta(ge=1)]], Meta(max_length=500)]  # where it applies ([]: all)


class Prescription(Struct, forbid_unknown_fields=True):
    sets: Annotated[int, Meta(ge=1, le=10)]
    reps: Annotated[int, Meta(ge=1, le=100)]
    tempo: Annotated[str, Meta(pattern=TEMPO)]
    load_change: Short  # "+2.5%", "hold", "-10%", "regress: ..." with a reason
    rest_s: Annotated[int, Meta(ge=0, le=600)]


class Answer(Struct, forbid_unknown_fields=True):
    summary: Annotated[str, Meta(min_length=1, max_length=1200)]
    cues: Annotated[list[Cue], Meta(max_length=8)]
    prescription: Prescription
    progressions: Annotated[list[Short], Meta(max_length=5)]
    regressions: Annotated[list[Short], Meta(max_length=5)]
    safety_flags: Annotated[list[Text], Meta(max_length=8)]


def _obj(props: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}


_STR = {"type": "string"}
_INT = {"type": "integer"}
# The plain schema a strict structured output accepts (every field required, no extra fields);
# the bounds and patterns above are checked here, after the answer arrives.
ANSWER_SCHEMA: dict[str, Any] = _obj({
    "summary": _STR,
    "cues": {"type": "array", "items": _obj({
        "priority": _INT, "cue": _STR, "why": _STR, "fault": {"type": ["string", "null"]},
        "reps": {"type": "array", "items": _INT}})},
    "prescription": _obj({"sets": _INT, "reps": _INT, "tempo": _STR, "load_change": _STR, "rest_s": _INT}),
    "progressions": {"type": "array", "items": _STR},
    "regressions": {"type": "array", "items": _STR},
    "safety_flags": {"type": "array", "items": _STR},
})
RESPONSE_FORMAT: dict[str, Any] = {"type": "json_schema", "json_schema": {
    "name": "workout_recommendation", "strict": True, "schema": ANSWER_SCHEMA}}

_decoder = msgspec.json.Decoder(Answer)


class AnswerError(ValueError):
    """The model's answer is not a usable recommendation. ``kind``: malformed (not JSON) or invalid."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


def check_answer(content: str | bytes, inputs: dict[str, Any]) -> Answer:
    """The answer in ``content``, validated against the schema and the measured ``inputs``."""
    try:
        msgspec.json.decode(content)
    except msgspec.DecodeError as exc:
        raise AnswerError("malformed", f"not JSON: {exc}") from None
    try:
        answer = _decoder.decode(content)
    except msgspec.ValidationError as exc:
        raise AnswerError("invalid", str(exc)) from None
    check_grounded(answer, inputs)
    return answer


def check_grounded(answer: Answer, inputs: dict[str, Any]) -> None:
    """Cues name only reps of the analysis and faults it measured (or checked for)."""
    n = len(inputs["reps"])
    known = {f for r in inputs["reps"] for f in r["faults"]} | set(inputs.get("faults_checked") or {})
    for i, cue in enumerate(answer.cues):
        bad = [r for r in cue.reps if r > n]
        if bad:
            raise AnswerError("invalid", f"cues[{i}] names rep {bad[0]}, the analysis has {n}")
        if cue.fault is not None and cue.fault not in known:
            raise AnswerError("invalid", f"cues[{i}] names fault {cue.fault!r}, not one the analysis measured")


def to_dict(answer: Answer) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.to_builtins(answer)
    out["cues"] = sorted(out["cues"], key=lambda c: c["priority"])
    return out


def from_dict(data: dict[str, Any]) -> Answer:
    return msgspec.convert(data, Answer)


class RequestError(ValueError):
    """A request field holds something unusable; the message says what was expected and what came."""


def parse_choice(body: dict[str, Any], name: str, allowed: tuple[str, ...], default: str | None = None) -> str:
    raw = body.get(name, default)
    if raw is None:
        raise RequestError(f"{name} is required: expected one of {', '.join(allowed)}")
    if not isinstance(raw, str) or raw.strip().lower() not in allowed:
        raise RequestError(f"{name} must be one of {', '.join(allowed)}; got {raw!r}")
    return raw.strip().lower()


def parse_notes(raw: Any) -> str:
    """Free text from the user, whitespace collapsed (so it keys the cache consistently)."""
    if raw is None:
        return ""
    if not isinstance(raw, str):
        raise RequestError(f"notes must be a string (up to {MAX_NOTES} characters); got {type(raw).__name__}")
    notes = " ".join(raw.split())
    if len(notes) > MAX_NOTES:
        raise RequestError(f"notes must be at most {MAX_NOTES} characters; got {len(notes)}")
    return notes
