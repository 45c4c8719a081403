"""Python client and CLI for rnnserve (needs only grpcio and protobuf)."""

from client.api import Client, RnnServeError
from client.context import PreparedContext, prepare_context

__all__ = ["Client", "PreparedContext", "RnnServeError", "prepare_context"]
