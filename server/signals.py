"""Stopping on signals: SIGTERM or SIGINT (and, for a worker, its parent going away) set an
event the server waits on; the handlers come off before the event loop closes.

asyncio 3.11 closes its self-pipe before it removes its signal handlers, so a signal in between
is written to a closed wakeup fd and reported on stderr ("Exception ignored when trying to write
to the signal wakeup fd"): a worker whose start fails while its parent stops the others hit it.
"""

from __future__ import annotations

import asyncio
import signal

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def stop_on(stop: asyncio.Event, parent_fd: int | None = None) -> None:
    """SIGTERM or SIGINT sets `stop`; so does end of file on `parent_fd` (a worker's parent
    never writes to it: readable means it went away)."""
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    if parent_fd is not None:
        fd = parent_fd

        def parent_gone() -> None:
            loop.remove_reader(fd)
            stop.set()

        loop.add_reader(fd, parent_gone)


def release() -> None:
    """Take the handlers off (default dispositions again) while the loop still runs."""
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.remove_signal_handler(sig)
