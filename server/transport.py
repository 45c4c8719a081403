"""The gRPC transport: channel options, TLS credentials, binding the port (one line on failure)."""

from __future__ import annotations

import re
import ssl
from pathlib import Path

import grpc

from server.errors import ModelLoadError
from server.ports import grpc_address, probe_port
from server.settings import Settings

PENDING_FLOOR = 4096  # calls gRPC's core may hold before the server takes them
CERTIFICATE = re.compile(rb"-----BEGIN CERTIFICATE-----")
PRIVATE_KEY = re.compile(rb"-----BEGIN (?:RSA |EC )?PRIVATE KEY-----")


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ModelLoadError(f"{path}: cannot read the {what} ({exc.strerror})") from None


def _pem(path: str, what: str, block: re.Pattern[bytes]) -> bytes:
    """The file's bytes when it holds the PEM block gRPC needs (else one line saying so)."""
    data = _read(path, what)
    if not block.search(data):
        kind = "unencrypted PEM private key" if block is PRIVATE_KEY else "PEM certificate"
        raise ModelLoadError(f"{path}: the {what} file holds no {kind}")
    return data


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS (and mutual TLS with --tls-client-ca) credentials, or None for plaintext."""
    if not settings.tls_cert:
        return None
    cert = _pem(settings.tls_cert, "TLS certificate", CERTIFICATE)
    key = _pem(settings.tls_key, "TLS key", PRIVATE_KEY)
    client_ca = (
        _pem(settings.tls_client_ca, "client CA", CERTIFICATE) if settings.tls_client_ca else None
    )
    _check(settings)
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


def _check(settings: Settings) -> None:
    """Load the TLS files as OpenSSL does: a key that is not the certificate's, an encrypted
    key, or a PEM block that does not parse is one line naming the files now, not a failed
    bind (gRPC's 'cannot bind the gRPC port') after the models have loaded."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert, key = settings.tls_cert, settings.tls_key
    try:  # the password callback stops OpenSSL prompting on a terminal for an encrypted key
        ctx.load_cert_chain(cert, key, password=lambda: b"")
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise ModelLoadError(f"{key}: the TLS key is not the key of {cert}") from None
        what = "do not parse as a PEM certificate chain and an unencrypted private key"
        raise ModelLoadError(f"{cert}, {key}: the TLS certificate and key {what}") from None
    if settings.tls_client_ca:
        try:
            ctx.load_verify_locations(settings.tls_client_ca)
        except ssl.SSLError:
            raise ModelLoadError(
                f"{settings.tls_client_ca}: the client CA does not parse as PEM certificates"
            ) from None


def grpc_options(settings: Settings) -> list[tuple[str, int]]:
    """The server's channel arguments: message limits, port sharing, backlog, connection age."""
    pending = max(PENDING_FLOOR, 16 * (settings.max_queue + settings.max_streams))
    opts = [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        # Worker processes share the port; one process alone must own it (a second server on
        # the same port would otherwise silently take half the connections).
        ("grpc.so_reuseport", 1 if settings.workers > 1 else 0),
        # gRPC's core cancels calls beyond this backlog (1,000 by default) before the server
        # sees them; let admission see every call and answer RESOURCE_EXHAUSTED itself.
        ("grpc.server.max_pending_requests", pending),
        ("grpc.server.max_pending_requests_hard_limit", pending),
    ]
    if settings.max_connection_age > 0:  # GOAWAY after this age; calls in flight get the grace
        opts += [
            ("grpc.max_connection_age_ms", int(settings.max_connection_age * 1000)),
            ("grpc.max_connection_age_grace_ms", int(settings.drain_seconds * 1000)),
        ]
    return opts


def bind(
    server: grpc.aio.Server, settings: Settings, credentials: grpc.ServerCredentials | None
) -> int:
    """Bind the gRPC port (TLS when configured); OSError naming the address when it is taken."""
    address = grpc_address(settings.host, settings.port)
    if settings.workers == 1:  # workers: the parent has probed and holds it
        probe_port(settings.host, settings.port, "gRPC")
    try:
        if credentials is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, credentials)
    except RuntimeError:  # grpcio raises instead of returning 0 on some failures
        port = 0
    if port == 0:
        raise OSError(f"cannot bind the gRPC port {address}")
    return port
