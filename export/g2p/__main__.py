"""python -m export.g2p {train,export,eval}: the G2P model's training-side command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DEFAULT_CHECKPOINT = Path("models/g2p.pt")
DEFAULT_REPORT = Path("models/g2p.report.json")


def cmd_train(args: argparse.Namespace) -> int:
    """Train on CMUdict and write the checkpoint and a JSON report."""
    import torch

    from export.g2p.train import TrainSettings, train

    torch.set_num_threads(args.threads)
    settings = TrainSettings(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        label_smoothing=args.label_smoothing,
        average=args.average,
        device=args.device,
    )
    overrides = {
        k: getattr(args, k)
        for k in ("embedding_dim", "encoder_hidden", "encoder_layers", "decoder_hidden", "dropout")
        if getattr(args, k) is not None
    }
    if args.input_feeding:
        overrides["input_feeding"] = True
    log = lambda s: print(s, flush=True)  # noqa: E731
    ckpt = train(args.out, overrides, settings, log, args.init, args.resume)
    report = {k: ckpt[k] for k in ("config", "metrics", "training")}
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Export the checkpoint as the repository model models/g2p/<version>/ (two graphs)."""
    from export.g2p.onnx_export import package
    from export.g2p.train import load_checkpoint

    model, vocab, ckpt = load_checkpoint(args.checkpoint)
    result = package(model, vocab, ckpt, args.repository, args.name, args.version)
    print(
        json.dumps(
            {"files": result["files"], "parity_max_abs_diff": result["parity"]["max_abs_diff"]}
        )
    )
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """Score the exported model on the test split: torch greedy, and the server's greedy and
    beam-search answers over the wire; write them into the report."""
    import torch

    from export.g2p.evaluate import evaluate

    torch.set_num_threads(1)
    result = evaluate(args.checkpoint, args.repository, args.intent, tuple(args.beam))
    print(json.dumps(result, indent=2))
    if args.report.exists():
        report = json.loads(args.report.read_text())
        report.setdefault("metrics", {})["test_split"] = result
        args.report.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(prog="python -m export.g2p", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train on CMUdict -> models/g2p.pt and its report")
    t.add_argument("--out", type=Path, default=DEFAULT_CHECKPOINT)
    t.add_argument("--report", type=Path, default=DEFAULT_REPORT)
    t.add_argument("--epochs", type=int, default=8)
    t.add_argument("--batch-size", type=int, default=256)
    t.add_argument("--lr", type=float, default=3e-3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--label-smoothing", type=float, default=0.1)
    t.add_argument(
        "--average",
        type=int,
        default=1,
        help="also score the mean weights of the last K epochs after each epoch; keep the best",
    )
    t.add_argument("--init", type=Path, help="start from this checkpoint's weights (same recipe)")
    for name in ("embedding-dim", "encoder-hidden", "encoder-layers", "decoder-hidden"):
        t.add_argument(f"--{name}", type=int, default=None)
    t.add_argument("--dropout", type=float, default=None)
    t.add_argument("--device", default="cpu", help="where batches run: cpu, cuda, cuda:1 ...")
    t.add_argument(
        "--input-feeding",
        action="store_true",
        help="the decoder reads the previous step's attentional vector too (same step graph I/O)",
    )
    t.add_argument(
        "--resume",
        type=Path,
        help="write the training state here after every epoch; continue from it if it exists",
    )
    t.set_defaults(func=cmd_train)
    e = sub.add_parser("export", help="checkpoint -> models/g2p/1/{encoder,step}.onnx")
    e.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    e.add_argument("--repository", type=Path, default=Path("models"))
    e.add_argument("--name", default="g2p")
    e.add_argument("--version", default="1")
    e.set_defaults(func=cmd_export)
    v = sub.add_parser("eval", help="test-split WER/PER: torch and the server, word for word")
    v.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    v.add_argument("--repository", type=Path, default=Path("models"))
    v.add_argument("--intent", type=Path, default=Path("models/intent.onnx"))
    v.add_argument("--report", type=Path, default=DEFAULT_REPORT)
    v.add_argument("--beam", type=int, nargs="+", default=[1, 5])
    v.set_defaults(func=cmd_eval)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
