"""The app's routes, read from the app object (so a route added later is covered by the suites
that walk them: ``test_hostile.py``, ``test_access.py``)."""

from __future__ import annotations

import re

from api import settings
from api.app import create_app

ID_PARAM = re.compile(r"\{(?:job_)?id(?::\w+)?\}")


def id_routes() -> list[tuple[str, str]]:
    """(method, path template) of every route that takes an analysis id, e.g.
    ``("GET", "/v1/analyses/{job_id:str}/events")``; HEAD and OPTIONS left out."""
    app = create_app(settings.load({"FORMCHECK_DATA_DIR": "/nonexistent", "XDG_CACHE_HOME": "/nonexistent"}),
                     workers=1, warm=False, run_jobs=False)
    out = [(method, route.path) for route in app.routes if ID_PARAM.search(route.path)
           for method in sorted(route.methods) if method not in ("HEAD", "OPTIONS")]
    assert len(out) >= 4, f"expected the analyses' id routes, found {out}"
    return out


def fill(template: str, job_id: str, name: str = "reps.png") -> str:
    """``template`` with the id (and a file name) in place, each one path segment."""
    from urllib.parse import quote

    def seg(s: str) -> str:
        return quote(s, safe="").replace(".", "%2E") if s in (".", "..") or "/" in s else quote(s, safe="")

    path = ID_PARAM.sub(seg(job_id), template)
    return re.sub(r"\{name(?::\w+)?\}", seg(name), path)
