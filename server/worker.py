"""The worker's side of --workers N: one serving process reporting to its parent.

A worker reports over a pipe, one JSON object a line: `listening` (bound, with the model's
description), `serving` (warm and accepting), `failed` (a start-up error, one line for the
operator). End of file on its stdin (the parent has gone) drains it like SIGTERM. The parent's
side is server/workers.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pickle
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from server.errors import ModelLoadError
from server.logs import configure
from server.settings import Settings

# The worker imports the same `server` package as its parent (argv[3] holds its folder).
WORKER_COMMAND = (
    "import sys; sys.path.insert(0, sys.argv[3]) if sys.argv[3] not in sys.path else None; "
    "from server.worker import worker_main; sys.exit(worker_main())"
)
PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)


@dataclass
class WorkerLink:
    """A worker's link to its parent: its index, the status pipe, the parent-watch fd."""

    index: int
    status: IO[str]
    parent_fd: int = 0  # stdin: end of file once the parent is gone

    def send(self, event: str, **fields: Any) -> None:
        """One status line to the parent (ignored once the parent is gone)."""
        with contextlib.suppress(OSError, ValueError):
            self.status.write(json.dumps({"event": event, **fields}) + "\n")
            self.status.flush()


def worker_main() -> int:
    """A worker process: settings (pickled) on stdin, its index and status fd as arguments."""
    index, status_fd = int(sys.argv[1]), int(sys.argv[2])
    settings: Settings = pickle.load(sys.stdin.buffer)
    configure(settings.log_level, {"worker": index})
    link = WorkerLink(index, os.fdopen(status_fd, "w"))
    from server.app import serve  # after logging is set up

    try:
        asyncio.run(serve(settings, worker=link))
    except (ModelLoadError, OSError) as exc:
        link.send("failed", error=str(exc))
        return 1
    except KeyboardInterrupt:
        return 0
    return 0
