"""Shared setup for the pytest-benchmark suites (run explicitly, never part of ``testpaths``).

    python -m pytest benchmarks/bench_*.py --benchmark-only -q

- puts ``tests/`` on ``sys.path`` so the suites can build synthetic clips with ``builders``.
"""

from __future__ import annotations

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))
