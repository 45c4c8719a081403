"""Server settings: one typed, frozen object read once at the entry point (flags, RNNSERVE_*)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import NoReturn

ENV_PREFIX = "RNNSERVE_"
# Upper bounds of settings whose values feed fixed-width fields (gRPC's are 32-bit ints).
LIMITS = {
    "max_message_bytes": 2**31 - 1,
    "max_connection_age": 2**31 / 1000,
    "drain_seconds": 2**31 / 1000,
    "sequence_idle_timeout": 2**63 / 1e6,
    "repository_poll_seconds": 86400.0,
    "max_batch_delay_us": 10**7,
    "warmup_runs": 1000,
    "workers": 256,
}
DEVICES = ("auto", "cpu", "cuda")
CONTROL_MODES = ("none", "poll", "explicit")
LOG_LEVELS = ("debug", "info", "warning", "error")
CHOICES = {"device": DEVICES, "model_control_mode": CONTROL_MODES, "log_level": LOG_LEVELS}
AT_LEAST_ONE = """intra_op_threads max_tokens max_text_chars max_stream_tokens max_batch_rows
max_message_bytes default_top_k max_batch_size max_sequences max_queue max_streams workers"""
NON_NEGATIVE = "warmup_runs drain_seconds max_batch_delay_us inference_threads max_connection_age"
TRUE_WORDS, FALSE_WORDS = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


@dataclass(frozen=True)
class Settings:
    """Everything the server needs to know; built by `parse_settings`, then passed down."""

    model: Path = Path("models/intent.onnx")
    model_name: str = ""  # v2/typed model name; default: the model file's stem
    model_repository: str = ""  # a folder of models and versions; replaces --model
    model_control_mode: str = "none"  # none, poll, explicit (Triton's names)
    repository_poll_seconds: float = 15.0
    default_model: str = ""  # the model of requests that name none (repository only)
    host: str = "127.0.0.1"
    port: int = 50051  # 0: pick a free port
    device: str = "auto"
    intra_op_threads: int = 1
    inference_threads: int = 1  # onnxruntime calls in flight; 0: on the event loop (blocks it)
    metrics_port: int = 9090  # 0: pick a free port; -1: no metrics endpoint
    log_level: str = "info"
    max_tokens: int = 512  # per utterance / per chunk / per v2 row
    max_text_chars: int = 8192  # characters of one text (Parse, a stream chunk)
    max_stream_tokens: int = 8192  # tokens over a whole ParseStream
    max_batch_rows: int = 256  # rows in one v2 request
    max_batch_size: int = 32  # rows per batched onnxruntime call; 1 turns batching off
    max_batch_delay_us: int = 0  # extra wait for a fuller batch once a worker is free
    sequence_idle_timeout: float = 60.0  # v2 sequences idle this long are freed
    max_sequences: int = 1024  # live v2 sequences
    max_message_bytes: int = 4 * 1024 * 1024
    warmup_runs: int = 3
    drain_seconds: float = 10.0
    allow_missing_parity: bool = False
    default_top_k: int = 3
    max_queue: int = 256  # requests admitted and not answered; beyond: RESOURCE_EXHAUSTED
    max_streams: int = 128  # open ParseStream / ModelStreamInfer streams
    tls_cert: str = ""  # server certificate (PEM); with tls_key turns TLS on
    tls_key: str = ""
    tls_client_ca: str = ""  # CA bundle: clients must present a certificate it signed (mTLS)
    auth_token_file: str = ""  # bearer tokens, one per line; re-read when the file changes
    max_connection_age: float = 0.0  # seconds; then GOAWAY so clients re-resolve (0: never)
    workers: int = 1  # serving processes on one port (SO_REUSEPORT); 1: this process serves
    cuda_tf32: bool = False  # TF32 matmuls on CUDA (faster, ~1e-3 off); default: exact float32

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{f.name.replace('_', '-')} must be a finite number")
        for name, allowed in CHOICES.items():
            if (value := getattr(self, name)) not in allowed:
                flag = name.replace("_", "-")
                raise ValueError(f"{flag} must be one of {', '.join(allowed)}, not {value!r}")
        if self.repository_poll_seconds <= 0:
            raise ValueError("repository-poll-seconds must be positive")
        if self.workers > 1 and self.model_control_mode == "explicit":
            raise ValueError(
                "model-control-mode explicit needs one process: with workers a load or unload "
                "request would reach only the worker that answers it"
            )
        if self.model_name and self.model_repository:
            raise ValueError("model-name names a single --model; a repository names its models")
        if not self.host.strip() or str(self.model) in ("", "."):
            raise ValueError(f"{'host' if not self.host.strip() else 'model'} must not be empty")
        if self.model_name != self.model_name.strip():
            raise ValueError(f"model-name {self.model_name!r} starts or ends with a blank")
        if "/" in self.model_name:
            raise ValueError(
                f"model-name {self.model_name!r} holds a '/': a model name is not a path"
            )
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port {self.port} is out of range")
        if not -1 <= self.metrics_port <= 65535:
            raise ValueError(f"metrics port {self.metrics_port} is out of range")
        for name in AT_LEAST_ONE.split():
            if getattr(self, name) < 1:
                raise ValueError(f"{name.replace('_', '-')} must be at least 1")
        for name in NON_NEGATIVE.split():
            if getattr(self, name) < 0:
                raise ValueError(f"{name.replace('_', '-')} must not be negative")
        if self.sequence_idle_timeout <= 0:
            raise ValueError("sequence-idle-timeout must be positive")
        for name, top in LIMITS.items():
            if getattr(self, name) > top:
                shown = f"{top:g}" if isinstance(top, float) else str(top)
                raise ValueError(f"{name.replace('_', '-')} must be at most {shown}")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("tls-cert and tls-key go together")
        if self.tls_client_ca and not self.tls_cert:
            raise ValueError("tls-client-ca (mutual TLS) needs tls-cert and tls-key")

    @property
    def name(self) -> str:
        """The model's public name."""
        return self.model_name or self.model.stem

    @property
    def runtime(self) -> RuntimeSettings:
        """How models are loaded and run."""
        return RuntimeSettings(
            device=self.device,
            intra_op_threads=self.intra_op_threads,
            inference_threads=self.inference_threads,
            warmup_runs=self.warmup_runs,
            allow_missing_parity=self.allow_missing_parity,
            cuda_tf32=self.cuda_tf32,
        )

    @property
    def batching(self) -> BatchSettings:
        """How concurrent requests are batched."""
        return BatchSettings(
            max_batch_size=self.max_batch_size, max_batch_delay_us=self.max_batch_delay_us
        )

    @property
    def limits(self) -> LimitSettings:
        """What one request, stream or caller may ask for."""
        return LimitSettings(
            max_tokens=self.max_tokens,
            max_text_chars=self.max_text_chars,
            max_stream_tokens=self.max_stream_tokens,
            max_batch_rows=self.max_batch_rows,
            max_message_bytes=self.max_message_bytes,
            max_queue=self.max_queue,
            max_streams=self.max_streams,
            max_sequences=self.max_sequences,
            sequence_idle_timeout=self.sequence_idle_timeout,
            default_top_k=self.default_top_k,
        )


@dataclass(frozen=True, kw_only=True)
class RuntimeSettings:
    """Model loading and execution."""

    device: str
    intra_op_threads: int
    inference_threads: int  # 0: onnxruntime on the event loop thread
    warmup_runs: int
    allow_missing_parity: bool
    cuda_tf32: bool = False  # TF32 matmuls in the CUDA provider


@dataclass(frozen=True, kw_only=True)
class BatchSettings:
    """Dynamic batching (max_batch_size 1: off)."""

    max_batch_size: int
    max_batch_delay_us: int


@dataclass(frozen=True, kw_only=True)
class LimitSettings:
    """Bounds on requests, streams and callers."""

    max_tokens: int
    max_text_chars: int
    max_stream_tokens: int
    max_batch_rows: int
    max_message_bytes: int
    max_queue: int
    max_streams: int
    max_sequences: int
    sequence_idle_timeout: float
    default_top_k: int


_HELP = {
    "model": "ONNX model file exported by `python -m export export`",
    "model_name": "public model name (default: the file's stem)",
    "model_repository": "folder of models: NAME/VERSION/model.onnx or NAME.onnx (replaces --model)",
    "model_control_mode": "none (load at start), poll (rescan the repository), explicit "
    "(RepositoryModelLoad/Unload)",
    "repository_poll_seconds": "seconds between repository scans in poll mode",
    "default_model": "model of requests that name none (default: --model's, or the repository's "
    "first by name that loads)",
    "host": "address to bind",
    "port": "gRPC port (0: any free port)",
    "device": "execution provider: auto (CUDA when available), cpu, cuda",
    "intra_op_threads": "onnxruntime threads per call",
    "inference_threads": "onnxruntime calls in flight at once (0: on the event loop thread)",
    "metrics_port": "Prometheus port (0: any free port, -1: off)",
    "log_level": "debug logs one line per request",
    "max_tokens": "most tokens per utterance, chunk or v2 row",
    "max_text_chars": "most characters in one text (checked before tokenizing)",
    "max_stream_tokens": "most tokens over a whole ParseStream",
    "max_batch_rows": "most rows in one v2 request",
    "max_batch_size": "rows per batched onnxruntime call (1: batching off)",
    "max_batch_delay_us": "extra microseconds to wait for a fuller batch",
    "sequence_idle_timeout": "seconds before an idle v2 sequence is freed",
    "max_sequences": "most live v2 sequences (RESOURCE_EXHAUSTED beyond)",
    "max_message_bytes": "largest gRPC message accepted or sent",
    "warmup_runs": "onnxruntime runs before health turns SERVING",
    "drain_seconds": "grace period for in-flight calls on SIGTERM",
    "allow_missing_parity": "serve a model without parity figures",
    "default_top_k": "intents listed when a request does not say",
    "max_queue": "requests admitted at once; beyond: RESOURCE_EXHAUSTED",
    "max_streams": "open streams at once; beyond: RESOURCE_EXHAUSTED",
    "tls_cert": "server certificate chain (PEM file); TLS when set",
    "tls_key": "server private key (PEM file)",
    "tls_client_ca": "CA bundle (PEM): require client certificates it signed (mTLS)",
    "auth_token_file": "bearer tokens, one per line, re-read when changed",
    "max_connection_age": "seconds before a connection is asked to reconnect (0: never), so "
    "client-side load balancing spreads over new replicas",
    "workers": "serving processes sharing the port (SO_REUSEPORT), each with its own sessions; "
    "1: one process",
    "cuda_tf32": "let the CUDA provider use TF32 matmuls (faster at large batches, ~1e-3 off "
    "float32; default: off, exact)",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ValueError(message)  # one line (no usage text); the entry point exits 2


def build_parser(prog: str = "python -m server") -> argparse.ArgumentParser:
    """Flags for every setting; RNNSERVE_<NAME> environment variables give the defaults."""
    p = _Parser(prog=prog, description="rnnserve gRPC server")
    for f in fields(Settings):
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            p.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=None, help=_HELP[f.name]
            )
        else:
            p.add_argument(flag, default=None, help=_HELP[f.name])
    return p


def _coerce(name: str, raw: str | bool, source: str) -> object:
    """`raw` as the setting's type; ValueError naming `source` (the flag or the variable)."""
    kind = {f.name: f.type for f in fields(Settings)}[name]
    if isinstance(raw, bool):
        return raw
    if kind in ("bool", bool):
        if raw.strip().lower() not in TRUE_WORDS + FALSE_WORDS:
            raise ValueError(f"{source}: {raw!r} is not one of 1/0, true/false, yes/no, on/off")
        return raw.strip().lower() in TRUE_WORDS
    try:
        if kind in ("int", int):
            return int(raw)
        if kind in ("float", float):
            return float(raw)
    except ValueError:
        what = "a whole number" if kind in ("int", int) else "a number"
        raise ValueError(f"{source}: {raw!r} is not {what}") from None
    if kind in ("Path", Path):
        return Path(raw)
    return raw


def parse_settings(
    argv: Sequence[str], environ: Mapping[str, str], prog: str = "python -m server"
) -> Settings:
    """Flags win over RNNSERVE_* variables, which win over the defaults."""
    args = build_parser(prog).parse_args(list(argv))
    values: dict[str, object] = {}
    for f in fields(Settings):
        env_name = ENV_PREFIX + f.name.upper()
        flag = getattr(args, f.name)
        raw = flag if flag is not None else environ.get(env_name)
        source = env_name if flag is None else "--" + f.name.replace("_", "-")
        if raw is not None:
            values[f.name] = _coerce(f.name, raw, source)
    if args.model is not None and args.model_repository is not None:
        raise ValueError("--model and --model-repository both say what to serve: give one")
    if args.model is not None:  # the flag wins over RNNSERVE_MODEL_REPOSITORY, as flags do
        values.pop("model_repository", None)
    return Settings(**values)  # type: ignore[arg-type]
