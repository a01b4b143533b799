"""The installed release's version, for `--version` and the `asset_gateway_build_info` metric."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def installed_version() -> str:
    """The version pip installed, or "unknown" when running from a source tree that was not installed."""
    try:
        return version("asset-gateway")
    except PackageNotFoundError:
        return "unknown"


VERSION = installed_version()
