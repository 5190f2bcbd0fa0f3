"""``formcheck recommend ANALYSIS.json --goal G``: the same recommender as the API, from a file.

ANALYSIS.json is what ``formcheck analyze --json`` prints or ``--out`` writes (``-``: stdin).
The model answers when OPENAI_API_KEY is set (cached in the same tiers as analyses), else the
rules. Exit 0 with the recommendation, 2 for an unreadable or unusable file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from .. import settings
from .prompt import normalize
from .rules import ranges
from .schema import DEFAULT_LEVEL, GOALS, LEVELS, RequestError, parse_notes


def add_parser(sub: Any) -> None:
    r = sub.add_parser("recommend", help="recommendations for the next session from an analysis JSON")
    r.add_argument("analysis", help="analysis JSON (from 'formcheck analyze --json' or analysis.json; - for stdin)")
    r.add_argument("--goal", required=True, choices=GOALS, help="training goal")
    r.add_argument("--level", default=DEFAULT_LEVEL, choices=LEVELS, help=f"lifter's level (default {DEFAULT_LEVEL})")
    r.add_argument("--notes", default="", help="anything the advice should know (pain, equipment, ...)")
    r.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    r.add_argument("--no-cache", action="store_true", help="neither read nor write the recommendation cache")


def _read(path: str) -> Any:
    text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise RequestError(f"{path} is not JSON ({exc}): expected an analysis from "
                           "'formcheck analyze --json'") from None


async def _run(cfg: settings.Settings, inputs: dict[str, Any], args: argparse.Namespace, notes: str) -> dict[str, Any]:
    from pipeline.cache import shared

    from .engine import Recommender

    cache_cfg = cfg.cache(not args.no_cache)
    recommender = Recommender(cfg.recommend, shared(cache_cfg) if cache_cfg is not None else None)
    try:
        return (await recommender.recommend(inputs, args.goal, args.level, notes)).body
    finally:
        await recommender.close()


def run(args: argparse.Namespace, cfg: settings.Settings) -> int:
    try:
        inputs = normalize(_read(args.analysis))
        notes = parse_notes(args.notes)
    except (OSError, RequestError) as exc:
        print(f"formcheck: error: {exc}", file=sys.stderr)
        return 2
    body = asyncio.run(_run(cfg, inputs, args, notes))
    if args.json:
        sys.stdout.write(json.dumps(body, allow_nan=False) + "\n")
    else:
        print(human(body))
    return 0


def human(b: dict[str, Any]) -> str:
    p = b["prescription"]
    lines = [f"source: {b['source']}{' (cached)' if b['cached'] else ''}"
             + (f"; model unavailable: {b['fallback']}" if b.get("fallback") else ""),
             f"summary: {b['summary']}", "cues:"]
    for c in b["cues"]:
        where = f" [rep{'s' if len(c['reps']) > 1 else ''} {ranges(c['reps'])}]" if c["reps"] else ""
        lines.append(f"  {c['priority']}. {c['cue']}{where}: {c['why']}")
    if not b["cues"]:
        lines.append("  (none: the measured set shows nothing to correct)")
    lines.append(f"next session: {p['sets']} x {p['reps']}, tempo {p['tempo']} (eccentric-pause-concentric s), "
                 f"rest {p['rest_s']} s, load: {p['load_change']}")
    lines.append("progressions: " + "; ".join(b["progressions"]))
    lines.append("regressions: " + "; ".join(b["regressions"]))
    lines += [f"safety: {s}" for s in b["safety_flags"]]
    if b.get("usage"):
        lines.append(f"tokens: {b['usage'].get('total_tokens')}")
    return "\n".join(lines)
