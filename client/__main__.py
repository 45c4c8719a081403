"""python -m client {parse,stream,info,health} --target HOST:PORT — the rnnserve command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from client.api import DEFAULT_TARGET, DEFAULT_TIMEOUT, Client, RnnServeError
from rnnserve.v1 import rnnserve_pb2 as pb


def tensor_dict(t: pb.Tensor) -> dict[str, Any]:
    """A Tensor as {"shape": [...], "values": [...]}."""
    return {"shape": list(t.shape), "values": [round(v, 7) for v in t.values]}


def result_dict(text: str | None, r: pb.ParseResponse | pb.ParseStreamResponse) -> dict[str, Any]:
    """One answer as a JSON-ready dict."""
    out: dict[str, Any] = {}
    if text is not None:
        out["text"] = text
    out["intent"] = {"name": r.intent.name, "confidence": round(r.intent.confidence, 6)}
    out["no_intent"] = r.no_intent
    out["top_intents"] = [
        {"name": i.name, "confidence": round(i.confidence, 6)} for i in r.top_intents
    ]
    out["slots"] = [
        {
            "name": s.name,
            "value": s.value,
            "token_start": s.token_start,
            "token_end": s.token_end,
            "char_start": s.char_start,
            "char_end": s.char_end,
            "confidence": round(s.confidence, 6),
        }
        for s in r.slots
    ]
    out["tokens"] = [t.text for t in r.tokens]
    if r.HasField("steps"):
        out["steps"] = {
            "tags": list(r.steps.tags),
            "outputs": tensor_dict(r.steps.outputs),
            "slot_scores": tensor_dict(r.steps.slot_scores),
        }
    if r.HasField("state"):
        out["state"] = {"h": tensor_dict(r.state.h)}
        if r.state.HasField("c"):
            out["state"]["c"] = tensor_dict(r.state.c)
    return out


def human(text: str | None, r: pb.ParseResponse | pb.ParseStreamResponse) -> str:
    """One answer for people."""
    head = f"{text!r} -> " if text is not None else ""
    if r.no_intent:
        best = r.top_intents[0] if r.top_intents else None
        guess = f"; best guess {best.name} ({best.confidence:.3f})" if best else ""
        lines = [f"{head}no intent{guess}"]
    else:
        lines = [f"{head}{r.intent.name} ({r.intent.confidence:.3f})"]
    for s in r.slots:
        lines.append(
            f"  {s.name}: {s.value!r} (tokens {s.token_start}-{s.token_end}, {s.confidence:.3f})"
        )
    if r.HasField("steps"):
        lines.append(f"  tags: {' '.join(r.steps.tags)}")
        lines.append(f"  outputs: shape {list(r.steps.outputs.shape)}")
    if r.HasField("state"):
        shapes = f"h {list(r.state.h.shape)}"
        if r.state.HasField("c"):
            shapes += f", c {list(r.state.c.shape)}"
        lines.append(f"  state: {shapes}")
    return "\n".join(lines)


def _emit(args: argparse.Namespace, text: str | None, r: Any) -> None:
    if args.json:
        print(json.dumps(result_dict(text, r), ensure_ascii=False), flush=True)
    else:
        print(human(text, r), flush=True)


def cmd_parse(args: argparse.Namespace, client: Client) -> int:
    """Parse texts (or stdin lines with `-`), concurrently; print in input order."""
    texts: list[str] = []
    for t in args.texts:
        if t == "-":
            texts.extend(line.rstrip("\n") for line in sys.stdin if line.strip())
        else:
            texts.append(t)
    if not texts:
        print("error: nothing to parse", file=sys.stderr)
        return 2
    results = client.parse_many(
        texts, top_k=args.top_k, steps=args.steps, state=args.state, model=args.model
    )
    status = 0
    for text, r in zip(texts, results):
        if isinstance(r, RnnServeError):
            print(f"{r.code}: {r.message} ({text!r})", file=sys.stderr)
            status = 1
        else:
            _emit(args, text, r)
    return status


def cmd_stream(args: argparse.Namespace, client: Client) -> int:
    """Stream stdin lines as chunks (text, or space-separated ids with --tokens)."""

    def chunks() -> Iterator[str | list[int]]:
        for line in sys.stdin:
            line = line.rstrip("\n")
            if not line.strip():
                continue
            yield [int(x) for x in line.split()] if args.tokens else line + " "

    for r in client.stream(
        chunks(), model=args.model, steps=args.steps, state=args.state, top_k=args.top_k
    ):
        _emit(args, None, r)
    return 0


def cmd_info(args: argparse.Namespace, client: Client) -> int:
    """Describe the model."""
    r = client.info(args.model)
    if args.json:
        from google.protobuf.json_format import MessageToDict

        print(json.dumps(MessageToDict(r, preserving_proto_field_name=True)))
        return 0
    metrics = json.loads(r.metrics_json or "{}").get("test", {})
    print(
        f"model {r.name}: {r.cell}{' (' + r.nonlinearity + ')' if r.cell == 'rnn' else ''}, "
        f"{r.num_layers} layer(s), {r.num_directions} direction(s), hidden {r.hidden_size}, "
        f"embedding {r.embedding_dim}, vocab {r.vocab_size}"
    )
    print(
        f"intents {len(r.intents)}, slot tags {len(r.slot_tags)}, streaming "
        f"{'yes' if r.streaming else 'no'}, provider {r.execution_provider}"
    )
    if metrics:
        print(
            f"test intent accuracy {metrics.get('intent_accuracy', 0):.4f}, "
            f"slot F1 {metrics.get('slot_f1', 0):.4f}; parity max diff "
            f"{r.parity_max_abs_diff:.2e}"
        )
    return 0


def cmd_health(args: argparse.Namespace, client: Client) -> int:
    """Print the health status; exit 0 only when SERVING."""
    status = client.health(args.service)
    print(status)
    return 0 if status == "SERVING" else 1


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--target",
        default=os.environ.get("RNNSERVE_TARGET", DEFAULT_TARGET),
        help="HOST:PORT of the server (env RNNSERVE_TARGET)",
    )
    common.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, help="deadline per call, seconds"
    )
    common.add_argument("--model", default="", help="model name (default: the server's)")
    common.add_argument("--json", action="store_true", help="one JSON object per line")
    common.add_argument("--tls-ca", help="CA bundle (PEM) that signed the server certificate")
    common.add_argument("--tls-cert", help="client certificate (PEM) for mutual TLS")
    common.add_argument("--tls-key", help="client private key (PEM) for mutual TLS")
    common.add_argument("--token-file", help="file holding a bearer token (env RNNSERVE_TOKEN)")
    p = argparse.ArgumentParser(prog="python -m client", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    parse = sub.add_parser("parse", parents=[common], help="parse utterances")
    parse.add_argument("texts", nargs="+", help="utterances, or - for one per stdin line")
    stream = sub.add_parser("stream", parents=[common], help="stream stdin lines as chunks")
    stream.add_argument("--tokens", action="store_true", help="lines are token ids")
    for sp in (parse, stream):
        sp.add_argument("--steps", action="store_true", help="per-step outputs and tags")
        sp.add_argument("--state", action="store_true", help="final hidden state")
        sp.add_argument("--top-k", type=int, default=0, help="intents to list")
    sub.add_parser("info", parents=[common], help="describe the model")
    health = sub.add_parser("health", parents=[common], help="grpc.health.v1 check")
    health.add_argument("--service", default="", help="service name ('' = whole server)")
    return p


COMMANDS = {"parse": cmd_parse, "stream": cmd_stream, "info": cmd_info, "health": cmd_health}


def main(argv: list[str] | None = None) -> int:
    """Run one command; a failed call prints `CODE: message` on stderr and exits 1."""
    args = build_parser().parse_args(argv)
    try:
        token = os.environ.get("RNNSERVE_TOKEN") or None
        if args.token_file:
            token = Path(args.token_file).read_text().strip().splitlines()[0].strip()
        client = Client(
            args.target,
            timeout=args.timeout,
            tls_ca=args.tls_ca,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            token=token,
        )
        with client:
            return COMMANDS[args.command](args, client)
    except RnnServeError as err:
        print(f"{err.code}: {err.message}", file=sys.stderr)
        return 1
    except (ValueError, OSError, IndexError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
