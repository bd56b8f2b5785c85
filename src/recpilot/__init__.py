"""RecPilot: predict user behaviour with Transformer models and guide what users see."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("recpilot")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+local"

__all__ = ["__version__"]
