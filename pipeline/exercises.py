"""Exercises as data: which signals count a rep, which posture is expected, which faults to check.

A signal component is an angle name from :mod:`pipeline.angles` and a direction:
``+1`` when the turning point (bottom of a squat, top of a curl, arms overhead in
a jumping jack) is the angle's maximum, ``-1`` when it is its minimum. Left and
right components are combined per frame, weighted by landmark visibility, so an
occluded side falls back to the visible one.

Faults are rules over per-rep measures (evaluated in :mod:`pipeline.measures`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Component:
    angle: str
    direction: int  # +1: turning point at the angle's max; -1: at its min
    weight: float = 1.0


@dataclass(frozen=True, slots=True)
class Fault:
    """A rule: ``measure`` compared with ``threshold`` (``op`` is '<' or '>') flags ``name``."""

    name: str
    measure: str
    op: str
    threshold: float
    message: str


@dataclass(frozen=True, slots=True)
class Exercise:
    name: str
    primary: str  # angle reported as the primary signal (left/right merged)
    components: tuple[Component, ...]
    secondary: tuple[str, ...]
    min_rom_deg: float  # smallest excursion of the combined signal that counts as a rep
    faults: tuple[Fault, ...]
    in_phase: tuple[str, ...] = ()  # paired angles whose sides move together in a rep (not gait)
    eccentric_first: bool = True  # the rep starts by lowering (squat) rather than lifting (curl)


def _lr(angle: str, direction: int, weight: float = 1.0) -> tuple[Component, Component]:
    return (Component(f"left_{angle}", direction, weight), Component(f"right_{angle}", direction, weight))


EXERCISES: dict[str, Exercise] = {
    e.name: e
    for e in (
        Exercise(
            "squat", "knee", _lr("knee", -1) + _lr("hip", -1, 0.5), ("hip", "trunk_lean"),
            25.0,
            (
                Fault("shallow_depth", "primary_min_deg", ">", 100.0, "knees did not bend to about 90-100 degrees"),
                Fault("trunk_lean", "trunk_lean_max_deg", ">", 50.0, "trunk leaned forward more than 50 degrees"),
                Fault("knee_asymmetry", "asymmetry_deg", ">", 15.0, "knees differed by more than 15 degrees"),
            ),
            in_phase=("knee",),
        ),
        Exercise(
            "lunge", "knee", _lr("knee", -1) + _lr("hip", -1, 0.5), ("hip", "trunk_lean"),
            25.0,
            (
                Fault("shallow_depth", "primary_min_deg", ">", 110.0, "front knee did not reach about 90-110 degrees"),
                Fault("trunk_lean", "trunk_lean_max_deg", ">", 30.0, "trunk leaned more than 30 degrees"),
            ),
            in_phase=("knee",),
        ),
        Exercise(
            "pushup", "elbow", _lr("elbow", -1), ("body_line", "shoulder"),
            25.0,
            (
                Fault("shallow_depth", "primary_min_deg", ">", 110.0, "elbows did not bend to about 90-110 degrees"),
                Fault("partial_lockout", "primary_max_deg", "<", 150.0, "arms not straightened at the top"),
                Fault("hip_sag", "body_line_min_deg", "<", 150.0, "hips sagged or piked (body line under 150 deg)"),
            ),
        ),
        Exercise(
            "bicep_curl", "elbow", _lr("elbow", -1), ("shoulder", "trunk_lean"),
            35.0,
            (
                Fault("partial_curl", "primary_min_deg", ">", 80.0, "elbow not flexed past 80 degrees at the top"),
                Fault("elbow_drift", "shoulder_max_deg", ">", 40.0, "upper arm swung forward more than 40 degrees"),
                Fault("swinging", "trunk_lean_range_deg", ">", 12.0, "trunk swung more than 12 degrees during the rep"),
            ),
            eccentric_first=False,
        ),
        Exercise(
            "shoulder_press", "elbow", _lr("elbow", 1) + _lr("shoulder", 1), ("shoulder", "trunk_lean"),
            30.0,
            (
                Fault("partial_lockout", "primary_max_deg", "<", 150.0, "arms not locked out overhead"),
                Fault("shallow_bottom", "primary_min_deg", ">", 100.0, "weights not lowered to shoulder level"),
                Fault("back_arch", "trunk_lean_max_deg", ">", 15.0, "leaned back more than 15 degrees"),
            ),
            eccentric_first=False,
        ),
        Exercise(
            "jumping_jack", "shoulder", _lr("shoulder", 1) + (Component("leg_spread", 1, 0.5),),
            ("leg_spread", "elbow"), 40.0,
            (
                Fault("arms_not_overhead", "primary_max_deg", "<", 140.0, "arms did not reach overhead"),
                Fault("narrow_legs", "leg_spread_max_deg", "<", 25.0, "legs did not open past 25 degrees"),
            ),
            eccentric_first=False,
        ),
        Exercise(
            "pullup", "elbow", _lr("elbow", -1), ("shoulder", "knee"),
            30.0,
            (
                Fault("partial_pull", "primary_min_deg", ">", 90.0, "elbows not flexed past 90 degrees at the top"),
                Fault("no_dead_hang", "primary_max_deg", "<", 150.0, "arms not extended at the bottom"),
                Fault("kipping", "knee_range_deg", ">", 45.0, "legs swung (knee angle range over 45 degrees)"),
            ),
            eccentric_first=False,
        ),
        Exercise(
            "situp", "hip", _lr("hip", -1), ("knee", "trunk_lean"),
            30.0,
            (
                Fault("partial_situp", "primary_min_deg", ">", 100.0, "trunk not raised past 100 degrees hip angle"),
                Fault("feet_lift", "knee_range_deg", ">", 30.0, "knees moved more than 30 degrees (feet lifting)"),
            ),
            eccentric_first=False,
        ),
    )
}

NAMES = tuple(EXERCISES)
GENERIC = "generic"  # the class-agnostic fallback: the dominant periodic motion
