"""The usage agent: collects one report per window in a customer's namespace and sends it."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("iot-usage-metering")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
