"""The rules recommender: the same measured inputs as the prompt, turned into advice by tables.

It answers when no model is configured, when the model fails, and for sets without reps.
Everything it says comes from the normalized inputs (``prompt.normalize``):

- cues: one per fault seen (its reps, and the measured value against the fault's threshold
  from ``pipeline.exercises``), then range of motion against the exercise's typical full range,
  reps whose range strays from the set's median, rushed lowering against the goal's tempo,
  left/right asymmetry, and fatigue (range lost or reps slowing in the last third);
- the prescription: sets x reps, tempo and rest by goal and level; the load change held or
  reduced while faults or fatigue show, raised only for a clean set;
- progressions and regressions per exercise (the regression aimed at the worst fault first);
- safety flags: risky faults, asymmetry, fatigue, low tracking confidence, pain in the notes.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass
from typing import Any

from pipeline.exercises import EXERCISES

from .schema import Answer, Cue, Prescription

MAX_CUES = 6
SHORT_ROM = 0.85  # below this share of the full range a rep is short
STRAY_ROM = 0.15  # a rep this far (share of the median) from the set's median range strays
ASYMMETRY_DEG = 10.0
LOW_CONFIDENCE = 0.6
PAIN = re.compile(r"\b(pain\w*|hurt\w*|injur\w*|ache\w*|aching|sore|tweak\w*|strain\w*|surgery|sprain\w*)\b", re.I)


@dataclass(frozen=True, slots=True)
class Profile:
    rom_target: float | None  # typical full range of the primary angle, degrees
    bodyweight: bool  # progress by reps or variation, not load
    bilateral: bool  # both sides do the same thing (asymmetry means something)
    ballistic: bool  # rhythm, not a controlled lowering
    progressions: tuple[str, ...]
    regressions: tuple[str, ...]


PROFILES: dict[str, Profile] = {
    "squat": Profile(95, False, True, False,
                     ("pause squats: 2 s at the bottom", "add 2.5-5% once every rep reaches depth",
                      "tempo squats (3 s down)"),
                     ("box squat to the depth you control", "goblet squat (the front load keeps the chest up)",
                      "bodyweight squat to full depth")),
    "lunge": Profile(85, False, False, False,
                     ("walking lunges", "add dumbbells in 2.5-5% steps", "deficit reverse lunges"),
                     ("static split squat", "reverse lunge to a pad under the back knee",
                      "lunge holding a support for balance")),
    "pushup": Profile(70, True, True, False,
                      ("pause 1 s at the bottom", "feet-elevated push-ups", "weighted or banded push-ups"),
                      ("incline push-ups (hands on a bench)", "knee push-ups with a straight hip line",
                       "eccentric-only push-ups (3 s down)")),
    "bicep_curl": Profile(110, False, True, False,
                          ("add 1-2 kg once every rep reaches the top", "slow 3 s lowering", "incline dumbbell curls"),
                          ("lighter dumbbells", "seated curls, back supported", "one arm at a time")),
    "shoulder_press": Profile(90, False, True, False,
                              ("add 1-2.5 kg", "pause 1 s at lockout", "standing press once seated form holds"),
                              ("seated press with back support", "lighter dumbbells", "landmine press")),
    "jumping_jack": Profile(140, True, True, True,
                            ("longer intervals at the same rhythm", "seal jacks or star jumps"),
                            ("step jacks (no jump)", "half jacks, arms to shoulder height")),
    "pullup": Profile(90, True, True, False,
                      ("add a 3 s lowering", "weighted pull-ups (+2.5 kg)", "pause with the chin over the bar"),
                      ("band-assisted pull-ups", "negative pull-ups (jump up, 3-5 s down)", "inverted rows")),
    "situp": Profile(60, True, False, False,
                     ("hold a plate on the chest", "slow 3 s lowering"),
                     ("crunches", "dead bugs")),
}
GENERIC = Profile(None, False, False, False,
                  ("add load or reps in small steps once every rep is controlled",),
                  ("reduce load or range until every rep is controlled",))

# (exercise, fault) -> (cue, severity 1..3, safety note or None); severity 3 faults are safety flags
FAULT_CUES: dict[tuple[str, str], tuple[str, int, str | None]] = {
    ("squat", "shallow_depth"): ("Sit deeper: hips down until the thighs reach parallel (knees near 90°)", 2, None),
    ("squat", "trunk_lean"): ("Chest up and brace before each descent; keep the weight over mid-foot", 3,
                              "forward trunk lean past 50° loads the lower back"),
    ("squat", "knee_asymmetry"): ("Bend both knees evenly: push the floor apart with both feet", 3,
                                  "knees differed by more than 15°: check one side for pain or a mobility limit"),
    ("lunge", "shallow_depth"): ("Drop the back knee toward the floor until the front knee is near 90°", 2, None),
    ("lunge", "trunk_lean"): ("Stay tall: torso upright over the hips", 2, None),
    ("pushup", "shallow_depth"): ("Lower until the elbows reach about 90°, chest a fist from the floor", 2, None),
    ("pushup", "partial_lockout"): ("Press all the way up: straight arms at the top", 1, None),
    ("pushup", "hip_sag"): ("Squeeze the glutes and brace: one straight line from head to heels", 3,
                            "sagging hips load the lower back"),
    ("bicep_curl", "partial_curl"): ("Finish each curl: hands to the shoulders", 2, None),
    ("bicep_curl", "elbow_drift"): ("Pin the elbows to your sides", 2, None),
    ("bicep_curl", "swinging"): ("No swing: stand tall with the glutes tight; lighten the load if needed", 3,
                                 "swinging the trunk uses momentum and strains the lower back"),
    ("shoulder_press", "partial_lockout"): ("Press to full lockout, biceps by the ears", 1, None),
    ("shoulder_press", "shallow_bottom"): ("Lower the weights to shoulder level every rep", 2, None),
    ("shoulder_press", "back_arch"): ("Ribs down, glutes tight: no leaning back", 3,
                                      "leaning back more than 15° shifts the press onto the lower back"),
    ("jumping_jack", "arms_not_overhead"): ("Reach the arms fully overhead", 1, None),
    ("jumping_jack", "narrow_legs"): ("Jump the feet wider than the shoulders", 1, None),
    ("pullup", "partial_pull"): ("Pull until the chin clears the bar", 2, None),
    ("pullup", "no_dead_hang"): ("Start every rep from a full hang, arms straight", 1, None),
    ("pullup", "kipping"): ("Keep the legs still: strict pulls, no swing", 2, "kipping loads the shoulders"),
    ("situp", "partial_situp"): ("Sit all the way up", 1, None),
    ("situp", "feet_lift"): ("Keep the feet down: anchor them", 1, None),
}
# the regression to list first when a fault shows
FAULT_REGRESSION: dict[tuple[str, str], str] = {
    ("squat", "trunk_lean"): "goblet squat (the front load keeps the chest up)",
    ("squat", "shallow_depth"): "box squat to the depth you control",
    ("squat", "knee_asymmetry"): "split squats, weaker side first",
    ("pushup", "hip_sag"): "incline push-ups (hands on a bench)",
    ("pushup", "shallow_depth"): "eccentric-only push-ups (3 s down)",
    ("bicep_curl", "swinging"): "seated curls, back supported",
    ("bicep_curl", "partial_curl"): "lighter dumbbells",
    ("shoulder_press", "back_arch"): "seated press with back support",
    ("pullup", "partial_pull"): "band-assisted pull-ups",
    ("pullup", "kipping"): "negative pull-ups (jump up, 3-5 s down)",
}

# goal -> level -> (sets, reps); goal -> (tempo, rest_s, target eccentric s)
VOLUME: dict[str, dict[str, tuple[int, int]]] = {
    "strength": {"beginner": (3, 5), "intermediate": (4, 5), "advanced": (5, 3)},
    "hypertrophy": {"beginner": (3, 10), "intermediate": (4, 10), "advanced": (4, 8)},
    "endurance": {"beginner": (2, 15), "intermediate": (3, 15), "advanced": (3, 20)},
    "mobility": {"beginner": (2, 8), "intermediate": (3, 8), "advanced": (3, 10)},
    "rehab": {"beginner": (2, 8), "intermediate": (2, 10), "advanced": (3, 10)},
}
TEMPO: dict[str, tuple[str, int, float]] = {
    "strength": ("2-1-1", 180, 2.0), "hypertrophy": ("3-0-1", 90, 3.0), "endurance": ("1-0-1", 45, 1.0),
    "mobility": ("3-2-2", 60, 3.0), "rehab": ("3-1-3", 90, 3.0),
}


def target_rom(exercise: str) -> int | None:
    p = PROFILES.get(exercise)
    return None if p is None or p.rom_target is None else int(p.rom_target)


def ranges(reps: list[int]) -> str:
    """[1, 2, 3, 5] -> '1-3, 5'."""
    out: list[str] = []
    for r in sorted(set(reps)):
        if out and out[-1].split("-")[-1] == str(r - 1):
            out[-1] = f"{out[-1].split('-')[0]}-{r}"
        else:
            out.append(str(r))
    return ", ".join(out)


def _reps_text(reps: list[int]) -> str:
    return f"rep {reps[0]}" if len(reps) == 1 else f"reps {ranges(reps)}"


def _median(values: list[Any]) -> float | None:
    vals = [float(v) for v in values if v is not None]
    return statistics.median(vals) if vals else None


def _g(x: float | None, unit: str = "") -> str:
    return "-" if x is None else f"{x:.3g}{unit}"


def _fault_value(exercise: str, fault: str, reps: list[dict[str, Any]]) -> str:
    """The measured value behind a fault on its reps, against the threshold: 'trunk_lean peaked at 59° (limit 50°)'."""
    ex = EXERCISES.get(exercise)
    rule = next((f for f in ex.faults if f.name == fault), None) if ex else None
    if rule is None:
        return ""
    measure = rule.measure
    if measure == "asymmetry_deg":
        vals = [r["asymmetry_deg"] for r in reps if r["asymmetry_deg"] is not None]
        return f"; left/right differed by up to {max(vals)}° (limit {rule.threshold:g}°)" if vals else ""
    m = re.fullmatch(r"(.+)_(min|max|range)_deg", measure)
    if not m or m.group(1) == "primary":
        return ""
    angle, stat = m.groups()
    got = [r["angles"].get(angle) for r in reps]
    pairs = [p for p in got if p and None not in p]
    if not pairs:
        return ""
    label = angle.replace("_", " ")
    if stat == "max":
        return f"; {label} peaked at {max(p[1] for p in pairs)}° (limit {rule.threshold:g}°)"
    if stat == "min":
        return f"; {label} went down to {min(p[0] for p in pairs)}° (limit {rule.threshold:g}°)"
    return f"; {label} moved through up to {max(p[1] - p[0] for p in pairs)}° (limit {rule.threshold:g}°)"


def _summary(inputs: dict[str, Any], profile: Profile) -> str:
    reps = inputs["reps"]
    n, ex, view = len(reps), inputs["exercise"].replace("_", " "), inputs["view"]
    if not reps:
        why = f" ({inputs['reason']})" if inputs.get("reason") else ""
        return f"No {ex} reps were counted{why}, so there is nothing measured to build on."
    roms = [r["rom_deg"] for r in reps if r["rom_deg"] is not None]
    parts = [f"{n} {ex} rep{'s' if n != 1 else ''} seen from the {view}"]
    if roms:
        med = _median(roms)
        assert med is not None
        notes = [f"median {med:.0f}°"] if n > 1 else []
        if profile.rom_target:
            notes.append(f"{100 * med / profile.rom_target:.0f}% of a ~{profile.rom_target:.0f}° full range")
        span = f"{min(roms)}-{max(roms)}°" if n > 1 else f"{roms[0]}°"
        parts.append(f"range of motion {span}" + (f" ({', '.join(notes)})" if notes else ""))
    ecc, pause, con = (_median([r[k] for r in reps]) for k in ("eccentric_s", "pause_s", "concentric_s"))
    parts.append(f"{'median ' if n > 1 else ''}tempo {_g(ecc)} s eccentric, {_g(pause)} s pause, "
                 f"{_g(con)} s concentric")
    by_fault: dict[str, list[int]] = {}
    for r in reps:
        for f in r["faults"]:
            by_fault.setdefault(f, []).append(r["rep"])
    faults = "; ".join(f"{f.replace('_', ' ')} on {_reps_text(rs)}" for f, rs in by_fault.items())
    text = ", ".join(parts) + f". Faults: {faults or 'none'}."
    fat = inputs["fatigue"]
    if fat["tempo_drift_pct"] is None:
        text += " Fatigue not measured (fewer than 3 reps)."
    else:
        text += (f" Last third vs first: reps {abs(fat['tempo_drift_pct'])}% "
                 f"{'slower' if fat['tempo_drift_pct'] >= 0 else 'faster'}, range "
                 f"{abs(fat['rom_loss_pct'] or 0)}% {'smaller' if (fat['rom_loss_pct'] or 0) >= 0 else 'larger'}.")
    return text


def recommend(inputs: dict[str, Any], goal: str, level: str, notes: str = "") -> Answer:
    """A recommendation built from the measured ``inputs`` alone."""
    ex = inputs["exercise"]
    profile = PROFILES.get(ex, GENERIC)
    reps: list[dict[str, Any]] = inputs["reps"]
    n = len(reps)
    tempo, rest_s, target_ecc = TEMPO[goal]
    cues: list[tuple[int, int, Cue]] = []  # (severity, reps affected, cue)
    hold = False  # something to fix before adding load (a rushed tempo or one stray rep is not)
    safety: list[str] = []
    defs = inputs.get("faults_checked") or {}

    # faults, each with the reps it appeared on and the value that tripped it
    by_fault: dict[str, list[int]] = {}
    for r in reps:
        for f in r["faults"]:
            by_fault.setdefault(f, []).append(r["rep"])
    for fault, on in by_fault.items():
        cue, severity, risk = FAULT_CUES.get((ex, fault), (f"Correct {fault.replace('_', ' ')}", 2, None))
        hit = [r for r in reps if r["rep"] in on]
        why = f"{defs.get(fault, fault.replace('_', ' '))} on {_reps_text(on)} of {n}{_fault_value(ex, fault, hit)}"
        cues.append((severity, len(on), Cue(0, cue, why[:400], fault, on)))
        hold = True
        if risk:
            safety.append(f"{risk} ({fault.replace('_', ' ')} on {_reps_text(on)})")
    depth_fault = any(f.measure.startswith("primary_") and f.name in by_fault
                      for f in (EXERCISES[ex].faults if ex in EXERCISES else ()))

    roms = [r["rom_deg"] for r in reps if r["rom_deg"] is not None]
    med_rom = _median(roms)
    if med_rom and profile.rom_target and not depth_fault:
        short = [r["rep"] for r in reps if r["rom_deg"] is not None and r["rom_deg"] < SHORT_ROM * profile.rom_target]
        if short:
            hold = True
            caveat = " (a front view can understate it)" if inputs["view"] == "front" else ""
            cues.append((2, len(short), Cue(0, "Use the full range of motion on every rep",
                                            f"median range {med_rom:.0f}° is {100 * med_rom / profile.rom_target:.0f}%"
                                            f" of a ~{profile.rom_target:.0f}° full range; short on "
                                            f"{_reps_text(short)}{caveat}", None, short)))
    if med_rom and n >= 3:
        stray = [r["rep"] for r in reps
                 if r["rom_deg"] is not None and abs(r["rom_deg"] - med_rom) > STRAY_ROM * med_rom]
        if stray:
            vals = ", ".join(f"{r['rom_deg']}°" for r in reps if r["rep"] in stray)
            cues.append((1, len(stray), Cue(0, "Make every rep the same depth",
                                            f"{_reps_text(stray)} moved {vals} against a median of {med_rom:.0f}°",
                                            None, stray)))

    if not profile.ballistic:
        rushed = [r["rep"] for r in reps if r["eccentric_s"] is not None and r["eccentric_s"] < 0.6 * target_ecc]
        if rushed:
            took = _median([r["eccentric_s"] for r in reps if r["rep"] in rushed])
            cues.append((2 if goal == "rehab" else 1, len(rushed), Cue(
                0, f"Control the lowering: about {target_ecc:g} s each rep",
                f"the eccentric took {_g(took)} s{' (median)' if len(rushed) > 1 else ''} on {_reps_text(rushed)}, "
                f"under {0.6 * target_ecc:.2g} s; {goal} work wants ~{target_ecc:g} s", None, rushed)))

    if profile.bilateral and "knee_asymmetry" not in by_fault:
        uneven = [r for r in reps if r["asymmetry_deg"] is not None and r["asymmetry_deg"] > ASYMMETRY_DEG]
        if uneven:
            on = [r["rep"] for r in uneven]
            worst = max(r["asymmetry_deg"] for r in uneven)
            hold = True
            cues.append((2, len(on), Cue(0, "Move both sides evenly; lead with the weaker side",
                                         f"left and right differed by up to {worst}° on {_reps_text(on)} "
                                         f"(over {ASYMMETRY_DEG:g}°)", None, on)))
            if worst > 15:
                safety.append(f"left/right difference up to {worst}° on {_reps_text(on)}: "
                              "check one side for pain or a mobility limit")

    fat = inputs["fatigue"]
    last = [r["rep"] for r in reps[-max(1, n // 3):]] if n >= 3 else []
    loss, drift = fat["rom_loss_pct"] or 0, fat["tempo_drift_pct"] or 0
    if last and (loss > 10 or "rom_loss" in fat["flags"]):
        cues.append((2, len(last), Cue(0, "End the set when the range starts to drop",
                                       f"range of motion fell {loss}% in the last third ({_reps_text(last)})",
                                       None, last)))
        safety.append(f"range of motion fell {loss}% by the end of the set: stop sets before form fades")
    if last and (drift > 20 or "tempo_slowing" in fat["flags"]):
        hold = True
        cues.append((1, len(last), Cue(0, "Stop 1-2 reps before the reps grind",
                                       f"reps slowed {drift}% in the last third ({_reps_text(last)})", None, last)))

    cues.sort(key=lambda c: (-c[0], -c[1]))
    ranked = [Cue(i + 1, c.cue, c.why, c.fault, c.reps) for i, (_, _, c) in enumerate(cues[:MAX_CUES])]
    severe = any(s == 3 for s, _, _ in cues) or "rom_loss" in fat["flags"] or loss > 10

    # the next session
    sets, count = VOLUME[goal][level]
    if profile.ballistic:  # rhythm work: longer sets, shorter rests, no slow lowering
        tempo, count, rest_s = "1-0-1", max(count, 20), min(rest_s, 60)
    load = _load_change(goal, profile, severe, hold, n)

    # caveats and risks
    low = [r["rep"] for r in reps if r["confidence"] is not None and r["confidence"] < LOW_CONFIDENCE]
    if low:
        safety.append(f"tracking confidence was low on {_reps_text(low)}: their numbers may be off")
    conf = inputs.get("exercise_confidence")
    if conf is not None and conf < 0.6:
        safety.append(f"the exercise was recognised with low confidence ({conf}): check it is a {ex.replace('_', ' ')}")
    if not reps:
        safety.append("no reps were measured: film the whole set from the side with the whole body in frame")
    elif n < 3:
        safety.append("fatigue not measured (needs at least 3 reps): film a full set to see it")
    if notes and PAIN.search(notes):
        safety.insert(0, "your notes mention pain: stop any movement that hurts and see a clinician or physiotherapist")
    if goal == "rehab":
        safety.append("rehab: follow your clinician's plan; these are form notes from a camera, not medical advice")

    regressions = list(profile.regressions)
    for fault in sorted(by_fault, key=lambda f: -len(by_fault[f])):
        first = FAULT_REGRESSION.get((ex, fault))
        if first:
            regressions = [first, *(r for r in regressions if r != first)]
            break
    progressions = list(profile.progressions) if goal not in ("rehab",) else list(profile.progressions[:1])
    return Answer(
        summary=_summary(inputs, profile)[:1200], cues=ranked,
        prescription=Prescription(sets=sets, reps=count, tempo=tempo, load_change=load, rest_s=rest_s),
        progressions=progressions[:3], regressions=regressions[:3], safety_flags=[s[:400] for s in safety[:8]],
    )


def _load_change(goal: str, profile: Profile, severe: bool, hold: bool, n: int) -> str:
    if n == 0:
        return "hold: nothing was measured to change it"
    if severe:
        return ("regress: use the first regression until the cues are met" if profile.bodyweight
                else "-10%: reduce the load until the safety cues are met")
    if hold:
        return "hold: same load until every rep meets the cues"
    if goal in ("mobility", "rehab"):
        return "hold: add range and control, not load"
    if profile.bodyweight:
        return "+1-2 reps per set, then the first progression"
    return {"strength": "+2.5-5%: no faults or short reps measured",
            "hypertrophy": "+2.5%, or +1-2 reps per set: no faults or short reps measured",
            "endurance": "+2 reps per set: no faults or short reps measured"}[goal]
