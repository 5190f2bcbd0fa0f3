"""Errors raised by the pipeline. One root, every message says what was expected and what came.

    FormcheckError
    ├── InputError            the user's input cannot be analyzed (CLI exit 2, HTTP 4xx)
    │   ├── VideoNotFound     no file at the path
    │   ├── EmptyInput        zero bytes
    │   ├── NotAVideo         no decodable video stream (images are accepted where a frame is)
    │   ├── CorruptVideo      a stream that stops decoding before it delivered usable frames
    │   └── InvalidParameter  an option outside its allowed values
    ├── ModelError            the pose model is missing or corrupt
    ├── WorkerError           an inference worker died or failed; the job can be retried
    └── ClusterError          the Dask scheduler cannot be reached or has no workers
"""

from __future__ import annotations

__all__ = [
    "FormcheckError",
    "InputError",
    "VideoNotFound",
    "EmptyInput",
    "NotAVideo",
    "CorruptVideo",
    "InvalidParameter",
    "ModelError",
    "WorkerError",
    "ClusterError",
]


class FormcheckError(Exception):
    """Root of every error formcheck raises on purpose."""


class InputError(FormcheckError, ValueError):
    """The input cannot be analyzed as given."""


class VideoNotFound(InputError):
    pass


class EmptyInput(InputError):
    pass


class NotAVideo(InputError):
    pass


class CorruptVideo(InputError):
    pass


class InvalidParameter(InputError):
    pass


class ModelError(FormcheckError):
    """The pose model is missing, unreadable or not a pose landmarker bundle."""


class WorkerError(FormcheckError, RuntimeError):
    """An inference worker failed; the input may be fine."""


class ClusterError(FormcheckError):
    """The Dask scheduler given with --scheduler cannot be reached, or no worker joined it."""
