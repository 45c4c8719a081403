"""python -m server --model models/intent.onnx --port 50051 (see --help; RNNSERVE_* env)."""

from __future__ import annotations

import asyncio
import difflib
import logging
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import fields

from server.errors import ModelLoadError
from server.logs import configure
from server.settings import ENV_PREFIX, Settings, parse_settings

# RNNSERVE_* names that are not server settings: the client's, and the variables Kubernetes sets
# for a Service named rnnserve (service links).
NOT_SETTINGS = re.compile(
    r"RNNSERVE_(TARGET|TOKEN|(HEADLESS_)?(SERVICE_HOST|SERVICE_PORT(_\w+)?|PORT_\d+_\w+))"
)


def unknown_variables(environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """RNNSERVE_* variables that name no setting (a misspelt one is otherwise ignored: a
    misspelt token file variable serves without tokens), each with the nearest setting's."""
    known = [f.name.upper() for f in fields(Settings)]
    out = []
    for name in sorted(environ):
        rest = name.removeprefix(ENV_PREFIX)
        if rest == name or rest in known or NOT_SETTINGS.fullmatch(name):
            continue
        near = difflib.get_close_matches(rest, known, n=1, cutoff=0.75)
        out.append((name, ENV_PREFIX + near[0] if near else ""))
    return out


def main(argv: list[str] | None = None) -> int:
    """Parse settings once, then serve; start-up problems are one line on stderr."""
    try:
        script = os.path.basename(sys.argv[0])
        prog = script if script == "rnnserve-server" else "python -m server"
        settings = parse_settings(sys.argv[1:] if argv is None else argv, os.environ, prog)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    configure(settings.log_level)
    for name, near in unknown_variables(os.environ):
        extra = {"variable": name} | ({"did_you_mean": near} if near else {})
        logging.getLogger("rnnserve.settings").warning("not a setting; ignored", extra=extra)
    if settings.workers > 1:  # no grpc in this process: it supervises worker processes
        from server.workers import supervise

        try:
            return supervise(settings)
        except OSError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    from server.app import serve  # after logging is set up

    try:
        asyncio.run(serve(settings))
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
