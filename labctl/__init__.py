"""labctl: the controller of a proof-of-concept testbed for smart-city devices."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("labctl")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+src"
