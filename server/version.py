"""The server's name and version, read from the package's own metadata (pyproject.toml)."""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

SERVER_NAME = "rnnserve"
PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def _version() -> str:
    """The installed distribution's version, else pyproject.toml's (a source tree or image)."""
    try:
        return metadata.version(SERVER_NAME)
    except metadata.PackageNotFoundError:
        pass
    try:
        return str(tomllib.loads(PYPROJECT.read_text())["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "0+unknown"


SERVER_VERSION = _version()
