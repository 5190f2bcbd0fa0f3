"""formcheck's compute pipeline: decode -> infer -> subject -> angles -> exercise -> reps -> measures."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("formcheck")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"
