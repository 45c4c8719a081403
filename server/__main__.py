"""python -m server --model models/intent.onnx --port 50051 (see --help; RNNSERVE_* env)."""

from __future__ import annotations

import asyncio
import os
import sys

from server.errors import ModelLoadError
from server.logs import configure
from server.settings import parse_settings


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
