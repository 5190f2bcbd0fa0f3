"""A worker imports only MediaPipe's pose task (no legacy solutions, no matplotlib), and a process
that later asks for the whole ``mediapipe`` package still gets all of it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from helpers import REPO

SCRIPT = """
import json, sys
from pipeline.infer import InferOptions, load, warm
warm(InferOptions(sys.argv[1]))
lean = {m: m in sys.modules for m in ("matplotlib", "mediapipe.python.solutions", "numba")}
import mediapipe as mp
from mediapipe.tasks.python import vision
whole = {"solutions": mp.solutions.pose.Pose.__name__, "image": mp.Image.__name__,
         "version": mp.__version__, "task": vision.PoseLandmarker.__name__,
         "same": load(InferOptions(sys.argv[1])).__class__ is vision.PoseLandmarker}
print(json.dumps({"lean": lean, "whole": whole}))
"""


def test_a_worker_loads_the_pose_task_without_the_legacy_package(xdg_cache: Path) -> None:
    model = next((xdg_cache / "formcheck" / "models").glob("*.task"))
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(model)], cwd=REPO, capture_output=True, text=True,
                         timeout=120, check=True).stdout
    doc = json.loads(out.strip().splitlines()[-1])
    assert doc["lean"] == {"matplotlib": False, "mediapipe.python.solutions": False, "numba": False}
    assert doc["whole"] == {"solutions": "Pose", "image": "Image", "version": "0.10.21",
                            "task": "PoseLandmarker", "same": True}
