"""One error hierarchy for the server; each class names its gRPC status code.

The runtime and the servicers raise these; one interceptor (server/app.py) maps them to a
status. Their messages are written for clients and never contain internals. Anything else
becomes INTERNAL with a fixed message, and the details go to the log only.
"""

from __future__ import annotations

# A status message travels in a header, percent-encoded (a character up to 12 bytes), and
# gRPC drops a call whose headers pass 8 KiB: a message that echoes a long name is cut.
MAX_MESSAGE_CHARS = 500


class ServeError(Exception):
    """Base class: `code` is a grpc.StatusCode name, the message is safe to send (and at most
    MAX_MESSAGE_CHARS characters: longer ones are cut, ending in '…')."""

    code = "INTERNAL"

    def __init__(self, message: str = "") -> None:
        if len(message) > MAX_MESSAGE_CHARS:
            message = message[: MAX_MESSAGE_CHARS - 1] + "…"
        super().__init__(message)


class InvalidArgument(ServeError):
    """Malformed or out-of-range input."""

    code = "INVALID_ARGUMENT"


class NotFound(ServeError):
    """Unknown model or version."""

    code = "NOT_FOUND"


class FailedPrecondition(ServeError):
    """Well formed, but this model cannot do it (e.g. stream a bidirectional model)."""

    code = "FAILED_PRECONDITION"


class Unavailable(ServeError):
    """Not ready yet, or draining."""

    code = "UNAVAILABLE"


class ResourceExhausted(ServeError):
    """A limit was reached: queue, sessions, sequences."""

    code = "RESOURCE_EXHAUSTED"


class Unauthenticated(ServeError):
    """No credentials, or credentials in the wrong form."""

    code = "UNAUTHENTICATED"


class PermissionDenied(ServeError):
    """Credentials that are not accepted."""

    code = "PERMISSION_DENIED"


class DeadlineExceeded(ServeError):
    """The caller's deadline passed before the work ran."""

    code = "DEADLINE_EXCEEDED"


class ModelLoadError(Exception):
    """The model file cannot be served. The message (with the file's path and onnxruntime's
    words) is for the operator: the start-up line and the log. `public` is what a client may
    read of it (RepositoryIndex, RepositoryModelLoad): neither path nor library text."""

    def __init__(self, message: str, public: str | None = None) -> None:
        super().__init__(message)
        self.public = message if public is None else public


def load_error(where: object, what: str, detail: str = "") -> ModelLoadError:
    """A load failure of the file `where`: the operator reads the file and `detail` (the
    library's words), a client `what` alone."""
    said = f"{where}: {what}" + (f" ({detail})" if detail else "")
    return ModelLoadError(said, public=what)


INTERNAL_MESSAGE = "internal error"
