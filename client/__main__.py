"""python -m client {parse,stream,generate,info,health} --target HOST:PORT — the CLI."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

from client.api import (
    DEFAULT_TARGET,
    DEFAULT_TIMEOUT,
    MAX_TIMEOUT,
    UINT32_MAX,
    Client,
    RnnServeError,
    check_timeout,
)
from client.context import ContextError, PreparedContext, prepare_context, read_context
from client.spoken import spoken
from rnnserve.v1 import rnnserve_pb2 as pb

INT64_MAX = 2**63 - 1  # a token id on the wire


class InputError(Exception):
    """Input the command cannot send (a bad stdin line or argument): one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse, with every usage error as one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        """Print `error: message` and exit 2."""
        self.exit(2, f"error: {message}\n")


# ---------------------------------------------------------------- flag values


def timeout_arg(text: str) -> float:
    """--timeout: a finite number of seconds above 0 (and at most a day)."""
    try:
        return check_timeout(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a number of seconds above 0 and at most {MAX_TIMEOUT:g}, not {text!r}"
        ) from None


def count_arg(zero: str) -> Callable[[str], int]:
    """A flag taking a whole number >= 0 that fits the wire's uint32, 0 meaning `zero`."""

    def parse(text: str) -> int:
        digits = text.strip()
        if not (digits.isascii() and digits.isdigit() and int(digits) <= UINT32_MAX):
            raise argparse.ArgumentTypeError(
                f"must be a whole number >= 0 (0: {zero}), not {text!r}"
            )
        return int(digits)

    return parse


def connections_arg(text: str) -> int:
    """--connections: a whole number >= 1."""
    digits = text.strip()
    if not (digits.isascii() and digits.isdigit() and 1 <= int(digits) <= 1024):
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to 1024, not {text!r}")
    return int(digits)


def target_arg(text: str) -> str:
    """--target: HOST:PORT (or a gRPC target such as unix:PATH), not empty."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must be HOST:PORT, not empty")
    if ":" not in text:  # gRPC would quietly use port 443
        raise argparse.ArgumentTypeError(f"must be HOST:PORT, not {text.strip()!r} (no port)")
    return text.strip()


def _read(path: str) -> bytes:
    if not path:
        raise argparse.ArgumentTypeError("needs a file name")
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot read {path}: {exc.strerror or exc}") from None


def certificate_arg(path: str) -> str:
    """--tls-ca, --tls-cert: a readable file holding a PEM certificate."""
    if b"-----BEGIN CERTIFICATE-----" not in _read(path):
        raise argparse.ArgumentTypeError(f"{path} holds no PEM certificate")
    return path


def private_key_arg(path: str) -> str:
    """--tls-key: a readable file holding an unencrypted PEM private key."""
    if not re.search(rb"-----BEGIN (?:RSA |EC )?PRIVATE KEY-----", _read(path)):
        raise argparse.ArgumentTypeError(f"{path} holds no unencrypted PEM private key")
    return path


def bearer_token(token: str, source: str) -> str:
    """`token` when a gRPC header can carry it (printable ASCII), else InputError."""
    if not (token.isascii() and token.isprintable()):
        raise InputError(f"the token in {source} has characters other than printable ASCII")
    return token


def token_file_arg(path: str) -> str:
    """--token-file: the file's first line that is neither blank nor a # comment."""
    try:
        text = _read(path).decode("utf-8-sig")  # a byte-order mark is not part of the token
    except UnicodeDecodeError:
        raise argparse.ArgumentTypeError(f"{path} is not UTF-8 text") from None
    if not text.strip():
        raise argparse.ArgumentTypeError(f"{path} is empty")
    lines = [ln.strip() for ln in text.splitlines()]
    tokens = [ln for ln in lines if ln and not ln.startswith("#")]
    if not tokens:
        raise argparse.ArgumentTypeError(f"{path} holds only # comments, no token")
    try:
        return bearer_token(tokens[0], path)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# ---------------------------------------------------------------- stdin


def _stdin_bytes() -> Iterator[bytes]:
    # Straight from the descriptor: `stream` reads stdin on a gRPC thread, and a thread left
    # waiting inside sys.stdin's buffer (Ctrl-C, a refused stream) aborts the interpreter's exit.
    fd, pending = sys.stdin.fileno(), b""
    while block := os.read(fd, 1 << 16):
        *lines, pending = (pending + block).split(b"\n")
        yield from lines
    if pending:
        yield pending


def stdin_lines() -> Iterator[tuple[int, str]]:
    """(line number, text without its line break) for each line on stdin."""
    for number, raw in enumerate(_stdin_bytes(), 1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InputError(f"stdin line {number} is not UTF-8 text") from None
        yield number, text.removesuffix("\r")


def token_ids(line: str, number: int) -> list[int]:
    """The space-separated token ids of one stdin line."""
    ids = []
    for word in line.split():
        if not (word.isascii() and word.isdigit()):
            raise InputError(
                f"stdin line {number}: {word!r} is not a token id"
                " (ids are whole numbers >= 0, separated by spaces)"
            )
        if int(word) > INT64_MAX:
            raise InputError(f"stdin line {number}: token id {word} is too large")
        ids.append(int(word))
    return ids


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
    out["in_scope_score"] = round(r.in_scope_score, 6)
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
            **({"canonical": s.canonical} if s.canonical else {}),
            **({"entry_id": s.entry_id, "entry_name": s.entry_name} if s.entry_name else {}),
            **({"entry_ids": list(s.entry_ids)} if len(s.entry_ids) > 1 else {}),
        }
        for s in r.slots
    ]
    if r.implied_slots:
        out["implied_slots"] = {i.name: i.value for i in r.implied_slots}
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
        canon = f" = {s.canonical!r}" if s.canonical and s.canonical != s.value else ""
        ids = list(s.entry_ids) if len(s.entry_ids) > 1 else [s.entry_id] if s.entry_id else []
        entry = f" [{', '.join(ids)}]" if ids else ""
        lines.append(
            f"  {s.name}: {s.value!r}{canon}{entry} (tokens {s.token_start}-{s.token_end}, "
            f"{s.confidence:.3f})"
        )
    for i in r.implied_slots:
        lines.append(f"  {i.name} (implied): {i.value!r}")
    if r.HasField("steps"):
        lines.append(f"  tags: {' '.join(r.steps.tags)}")
        lines.append(f"  outputs: shape {list(r.steps.outputs.shape)}")
    if r.HasField("state"):
        shapes = f"h {list(r.state.h.shape)}"
        if r.state.HasField("c"):
            shapes += f", c {list(r.state.c.shape)}"
        lines.append(f"  state: {shapes}")
    return "\n".join(lines)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shown(text: str, most: int = 80) -> str:
    """An input as an error line names it: quoted, and cut after `most` characters."""
    if len(text) <= most:
        return repr(text)
    return f"{text[: most - 20]!r}… ({len(text)} characters)"


def _emit(args: argparse.Namespace, text: str | None, r: Any) -> None:
    if args.json:
        print(json.dumps(result_dict(text, r), ensure_ascii=False), flush=True)
    else:
        print(human(text, r), flush=True)


def _context(args: argparse.Namespace) -> PreparedContext | None:
    """The --context file, read and serialized once per command."""
    if not args.context:
        return None
    try:
        return prepare_context(read_context(args.context))
    except (OSError, ContextError) as exc:
        raise InputError(f"--context: {exc}") from None


def cmd_parse(args: argparse.Namespace, client: Client) -> int:
    """Parse texts (or stdin lines with `-`), concurrently; print in input order."""
    texts: list[str] = []
    for number, t in enumerate(args.texts, 1):
        if t == "-":
            texts.extend(line for _, line in stdin_lines() if line.strip())
        elif not _encodable(t):
            raise InputError(f"utterance {number} on the command line is not UTF-8 text")
        else:
            texts.append(t)
    if not texts:
        print("error: nothing to parse", file=sys.stderr)
        return 2
    results = client.parse_many(
        texts,
        top_k=args.top_k,
        steps=args.steps,
        state=args.state,
        model=args.model,
        version=args.model_version,
        context=_context(args),
    )
    status = 0
    told: set[str] = set()  # a refused --context is told once, not once per utterance
    for text, r in zip(texts, results):
        if isinstance(r, RnnServeError):
            status = 1
            if _about_context(r):
                if r.message not in told:
                    print(f"{r.code}: --context {args.context}: {r.message}", file=sys.stderr)
                told.add(r.message)
                continue
            print(f"{r.code}: {r.message} ({shown(text)})", file=sys.stderr)
        else:
            _emit(args, text, r)
    return status


def _about_context(err: RnnServeError) -> bool:
    """Whether the server refused the request's context (its messages name `context`)."""
    return err.code == "INVALID_ARGUMENT" and err.message.startswith("context")


def cmd_stream(args: argparse.Namespace, client: Client) -> int:
    """Stream stdin lines as chunks (text, or space-separated ids with --tokens)."""

    sent: list[int] = []  # the stdin line number of each chunk sent

    def chunks() -> Iterator[str | list[int]]:
        for number, line in stdin_lines():
            if line.strip():
                chunk = token_ids(line, number) if args.tokens else line + " "
                sent.append(number)
                yield chunk

    answered = 0
    try:
        for r in client.stream(
            chunks(),
            model=args.model,
            version=args.model_version,
            steps=args.steps,
            state=args.state,
            top_k=args.top_k,
            context=_context(args),
        ):
            _emit(args, None, r)
            answered += 1
    except RnnServeError as err:
        # The server answers chunks in order and stops at the first it refuses.
        if _about_context(err):
            raise RnnServeError(err.code, f"--context {args.context}: {err.message}") from None
        if err.code == "INVALID_ARGUMENT" and answered < len(sent):
            raise RnnServeError(err.code, f"{err.message} (stdin line {sent[answered]})") from None
        raise
    if not sent:
        print("error: nothing to stream", file=sys.stderr)
        return 2
    return 0


def cmd_info(args: argparse.Namespace, client: Client) -> int:
    """Describe the model."""
    r = client.info(args.model, args.model_version)
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


def generation_dict(text: str, words: list[str], answers: list[Any]) -> dict[str, Any]:
    """One input (a name of one or more words) and each word's answer, as JSON."""
    out = []
    for word, r in zip(words, answers):
        out.append(
            {
                "word": word,
                "tokens": list(r.tokens),
                "score": r.score,
                "finished": r.finished,
                "hypotheses": [
                    {"tokens": list(h.tokens), "score": h.score, "finished": h.finished}
                    for h in r.hypotheses
                ],
            }
        )
    return {"text": text, "words": out}


def cmd_generate(args: argparse.Namespace, client: Client) -> int:
    """Generate for each input (stdin lines with `-`); a name of several words is split into
    words (digits as English number words: "Lamp 2" -> Lamp, two), all sent at once so the
    server batches their steps; print in input order."""
    items: list[str] = []
    for number, t in enumerate(args.texts, 1):
        if t == "-":
            items.extend(line.strip() for _, line in stdin_lines() if line.strip())
        elif not _encodable(t) or not t.strip():
            raise InputError(f"input {number} on the command line is empty or not UTF-8 text")
        else:
            items.append(t.strip())
    said = [[w for part in item.split() for w in spoken(part)] for item in items]
    words = [w for item_words in said for w in item_words]
    if not words:
        print("error: nothing to generate", file=sys.stderr)
        return 2
    results = client.generate_many(
        words,
        model=args.model,
        version=args.model_version,
        beam_size=args.beam_size,
        max_steps=args.max_steps,
        num_results=args.num_results,
    )
    status = 0
    at = 0
    for item, item_words in zip(items, said):
        n = len(item_words)
        answers, at = results[at : at + n], at + n
        failed = [(w, r) for w, r in zip(item_words, answers) if isinstance(r, RnnServeError)]
        for word, err in failed:
            assert isinstance(err, RnnServeError)
            print(f"{err.code}: {err.message} ({shown(word)})", file=sys.stderr)
            status = 1
        if failed:
            continue
        if args.json:
            row = generation_dict(item, item_words, answers)
            print(json.dumps(row, ensure_ascii=False), flush=True)
        else:
            phones = " | ".join(" ".join(r.tokens) for r in answers)  # type: ignore[union-attr]
            print(f"{item}\t{phones}", flush=True)
    return status


def cmd_health(args: argparse.Namespace, client: Client) -> int:
    """Print the health status; exit 0 only when SERVING."""
    status = client.health(args.service)
    print(status)
    return 0 if status == "SERVING" else 1


def build_parser(prog: str = "python -m client") -> Parser:
    """The command-line parser; flag values are checked as they are parsed."""
    common = Parser(add_help=False)
    common.add_argument(
        "--target",
        type=target_arg,
        default=os.environ.get("RNNSERVE_TARGET") or DEFAULT_TARGET,
        help="HOST:PORT of the server (env RNNSERVE_TARGET)",
    )
    common.add_argument(
        "--timeout",
        type=timeout_arg,
        default=DEFAULT_TIMEOUT,
        help=f"deadline per call, seconds above 0, at most {MAX_TIMEOUT:g}",
    )
    common.add_argument(
        "--connections",
        type=connections_arg,
        default=1,
        help="connections to the server, calls spread over them in turn (reaches every "
        "worker process of a server run with --workers)",
    )
    common.add_argument("--model", default="", help="model name (default: the server's)")
    common.add_argument(
        "--model-version", default="", help="model version (default: the newest ready one)"
    )
    common.add_argument("--json", action="store_true", help="one JSON object per line")
    common.add_argument(
        "--tls-ca",
        type=certificate_arg,
        metavar="PEM",
        help="CA bundle that signed the server certificate (TLS)",
    )
    common.add_argument(
        "--tls-cert",
        type=certificate_arg,
        metavar="PEM",
        help="client certificate for mutual TLS (with --tls-key)",
    )
    common.add_argument(
        "--tls-key",
        type=private_key_arg,
        metavar="PEM",
        help="client private key for mutual TLS (with --tls-cert)",
    )
    common.add_argument(
        "--token-file",
        dest="token",
        type=token_file_arg,
        metavar="PATH",
        help="file whose first line (blank and # lines skipped) is a bearer token"
        " (env RNNSERVE_TOKEN)",
    )
    p = Parser(prog=prog, description=__doc__)
    sub = p.add_subparsers(
        dest="command", required=True, metavar="{parse,stream,generate,info,health}"
    )
    parse = sub.add_parser("parse", parents=[common], help="parse utterances")
    parse.add_argument("texts", nargs="+", help="utterances, or - for one per stdin line")
    stream = sub.add_parser("stream", parents=[common], help="stream stdin lines as chunks")
    stream.add_argument(
        "--tokens", action="store_true", help="lines are token ids, separated by spaces"
    )
    for sp in (parse, stream):
        sp.add_argument("--steps", action="store_true", help="per-step outputs and tags")
        sp.add_argument("--state", action="store_true", help="final hidden state")
        sp.add_argument(
            "--top-k",
            type=count_arg("the server's default"),
            default=0,
            help="intents to list (0: the server's default)",
        )
        sp.add_argument(
            "--context",
            metavar="FILE",
            help="the home's floors, areas and entities (YAML or JSON; Home Assistant's "
            "intent test fixtures work as they are)",
        )
    gen = sub.add_parser(
        "generate", parents=[common], help="output sequences (g2p: pronunciations of words)"
    )
    gen.add_argument("texts", nargs="+", help="words or names, or - for one per stdin line")
    for flag, zero, what in (
        ("--beam-size", "greedy", "beam search width"),
        ("--max-steps", "the model's", "decoder steps at most"),
        ("--num-results", "1", "beam search: the best N"),
    ):
        gen.add_argument(flag, type=count_arg(zero), default=0, help=f"{what} (0: {zero})")
    sub.add_parser("info", parents=[common], help="describe the model")
    health = sub.add_parser("health", parents=[common], help="grpc.health.v1 check")
    health.add_argument("--service", default="", help="service name ('' = whole server)")
    return p


COMMANDS = {
    "parse": cmd_parse,
    "stream": cmd_stream,
    "generate": cmd_generate,
    "info": cmd_info,
    "health": cmd_health,
}


def _prog() -> str:
    """How the command was called: `rnnserve` when installed as a script."""
    name = Path(sys.argv[0]).name
    return "python -m client" if name in ("__main__.py", "") else name


def main(argv: list[str] | None = None) -> int:
    """Run one command: exit 0; 1 with `CODE: message` when a call fails; 2 on bad input.

    Output cut short (a closed pipe) exits 1 and Ctrl-C 130, both without a traceback.
    """
    parser = build_parser(_prog())
    args = parser.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together: mutual TLS needs both")
    try:
        token = args.token
        if token is None and os.environ.get("RNNSERVE_TOKEN"):
            token = bearer_token(os.environ["RNNSERVE_TOKEN"], "RNNSERVE_TOKEN")
        client = Client(
            args.target,
            timeout=args.timeout,
            tls_ca=args.tls_ca,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            token=token,
            connections=args.connections,
        )
        with client:
            return COMMANDS[args.command](args, client)
    except RnnServeError as err:
        print(f"{err.code}: {err.message}{_tls_hint(err, args.tls_ca)}", file=sys.stderr)
        return 1
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # Whoever read the output has gone (`| head`): stop quietly, without a last flush.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        return 130


# What a failed connection's text says about TLS, and what to do about it.
TLS_HINTS = (
    ("Socket closed", False, "the server may use TLS: pass --tls-ca with its CA certificate"),
    ("WRONG_VERSION_NUMBER", True, "the server may not use TLS: leave out --tls-ca"),
    (
        "CERTIFICATE_VERIFY_FAILED",
        True,
        "--tls-ca is not the CA that signed the server's certificate",
    ),
)


def _tls_hint(err: RnnServeError, tls_ca: str | None) -> str:
    """A hint for an UNAVAILABLE connection that failed over TLS (or its absence); '' else."""
    if err.code != "UNAVAILABLE":
        return ""
    for needle, with_ca, hint in TLS_HINTS:
        if needle in err.message and with_ca == bool(tls_ca):
            return f" ({hint})"
    return ""


if __name__ == "__main__":
    sys.exit(main())
