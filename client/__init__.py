"""Python client and CLI for rnnserve (needs only grpcio and protobuf)."""

from client.api import Client, RnnServeError

__all__ = ["Client", "RnnServeError"]
