"""python -m export {data,train,export,parity,kinds,sweep}: the training-side command line."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from export.data import (
    DataError,
    Example,
    generate,
    read_jsonl,
    summarize,
    trained_split,
    write_jsonl,
)
from export.languages import DEFAULT_LANGUAGE, LANGUAGES, get_language
from modelspec.context import CONFIG_CONTEXT_DIM, CONTEXT_DIM
from modelspec.names import CELLS

DEFAULT_ARCH: dict[str, Any] = {
    "cell": "gru",
    "bidirectional": True,
    "num_layers": 1,
    "nonlinearity": "tanh",
    "embedding_dim": 64,
    "hidden_size": 128,
    "dropout": 0.2,
}


def _load_splits(args: argparse.Namespace) -> tuple[dict[str, list[Example]], dict[str, Any]]:
    """User JSONL files when given, else sentences generated from home-assistant-intents."""
    if args.train_file:
        train = read_jsonl(args.train_file)
        splits = {
            "train": train,
            "val": read_jsonl(args.val_file) if args.val_file else [],
            "test": read_jsonl(args.test_file) if args.test_file else [],
        }
        if not splits["val"] or not splits["test"]:
            # Carve what is missing from the end of the training file (deterministic).
            n = max(1, len(train) // 10)
            if not splits["val"]:
                splits["val"], train = train[-n:], train[:-n]
            if not splits["test"]:
                splits["test"], train = train[-n:], train[:-n]
            splits["train"] = train
        source = {
            "data": "jsonl",
            "train": str(args.train_file),
            "val": str(args.val_file or ""),
            "test": str(args.test_file or ""),
        }
    else:
        splits = generate(seed=args.seed, language=args.language)
        source = {"data": "home-assistant-intents", "seed": args.seed}
    return splits, {**source, "language": args.language}


def _data_dir(args: argparse.Namespace) -> Path:
    """--data-dir, else the language's own folder under build/data."""
    return Path(args.data_dir or get_language(args.language).data_dir)


def _arch(args: argparse.Namespace) -> dict[str, Any]:
    """DEFAULT_ARCH with the architecture flags given on the command line."""
    flags = vars(args)
    return {k: v if flags[k] is None else flags[k] for k, v in DEFAULT_ARCH.items()}


KIND_NAMES = {"random": "(a) random", "template": "(b) templ.", "values": "(c) names"}


def _fmt(m: dict[str, Any]) -> str:
    return f"intent acc {m['intent_accuracy']:.4f}  slot F1 {m['slot_f1']:.4f}  (n={m['n']})"


def cmd_data(args: argparse.Namespace) -> int:
    """Generate the splits and write them as JSONL."""
    splits = generate(seed=args.seed, language=args.language)
    out_dir = Path(args.out_dir or get_language(args.language).data_dir)
    for name, exs in splits.items():
        write_jsonl(out_dir / f"{name}.jsonl", exs)
    print(json.dumps(summarize(splits), indent=2))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train one model, write the checkpoint and the report."""
    from export.quality import (
        NAMES_KIND,
        NAMES_TARGET_FRR,
        TARGET_FRR,
        format_quality,
        quality_report,
    )
    from export.train import (
        TrainConfig,
        load_checkpoint,
        save_checkpoint,
        teacher_of,
        train,
        train_config_dict,
    )

    lang = get_language(args.language)
    out = Path(args.out or f"{lang.model_stem}.pt")
    report_path = Path(args.report or f"{lang.model_stem}.report.json")
    splits, source = _load_splits(args)
    for name, exs in splits.items():
        write_jsonl(_data_dir(args) / f"{name}.jsonl", exs)
    cfg = TrainConfig(
        seed=args.seed,
        train_seed=args.train_seed,
        epochs=args.epochs,
        threads=args.threads,
        progress=not args.no_progress,
        out_of_scope=args.out_of_scope,
        oos_weight=args.oos_weight
        if args.oos_weight is not None
        else (1.0 if args.language == DEFAULT_LANGUAGE else 0.5),
        min_count=args.min_count,
        language=args.language,
        context_share=args.context_share,
        # English (with the context input): a full one-cycle run, more whole-value dropout.
        patience=args.patience or (30 if args.language == DEFAULT_LANGUAGE else 6),
        slot_span_dropout=args.slot_span_dropout
        or (0.5 if args.language == DEFAULT_LANGUAGE else 0.35),
        slot_word_swap=args.slot_word_swap,
        distill_weight=args.distill_weight,
        distill_temperature=args.distill_temperature,
        distill_out_of_scope=args.distill_out_of_scope,
        distill_online=args.distill_online,
        distill_mix=args.distill_mix,
    )
    teacher = teacher_of([load_checkpoint(p) for p in args.distill]) if args.distill else None
    arch = _arch(args)
    use_context = args.context if args.context is not None else args.language == DEFAULT_LANGUAGE
    arch[CONFIG_CONTEXT_DIM] = CONTEXT_DIM if use_context else 0
    print(
        f"training {arch} on {len(splits['train'])} examples "
        f"(val {len(splits['val'])}, test {len(splits['test'])})",
        flush=True,
    )
    result = train(splits, arch, cfg, log=lambda m: print(m, flush=True), teacher=teacher)
    quality = quality_report(
        result.model,
        result.tokenizer,
        result.labels.intents,
        splits["val"],
        splits["test"],
        language=args.language,
        train=splits["train"],
        tags=result.labels.tags,
        target_frr=NAMES_TARGET_FRR if use_context else TARGET_FRR,
        calibrate_kind=NAMES_KIND if use_context else "",
    )
    result.metrics.update(quality)
    extra = {**source, "train_config": train_config_dict(cfg), "splits": summarize(splits)}
    if args.distill:
        extra["distill"] = [Path(p).name for p in args.distill]
    save_checkpoint(out, result, extra)
    test = result.metrics["test"]
    report = {
        "arch": arch,
        "seconds": round(result.seconds, 1),
        "best_epoch": result.best_epoch,
        "metrics": result.metrics,
        "data": extra,
    }
    report_path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"\ntrained in {result.seconds:.0f} s (best epoch {result.best_epoch})")
    print(f"test         {_fmt(test)}")
    for kind, m in test.get("by_kind", {}).items():
        print(f"  {KIND_NAMES.get(kind, kind):10s} {_fmt(m)}")
    for c in test["worst_confusions"][:5]:
        print(f"  confused: {c['gold']} -> {c['predicted']} x{c['count']}")
    print("\n".join(format_quality(quality)))
    print(f"checkpoint {out}\nreport     {report_path}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Export the checkpoint to ONNX, check parity, embed the metadata; optionally quantize."""
    from export.onnx_export import embed_metadata
    from export.package import package
    from export.parity import format_table
    from export.train import load_checkpoint
    from export.values import build_values
    from modelspec.meta import ModelMetadata
    from modelspec.names import METADATA_KEY

    ckpt = load_checkpoint(args.checkpoint)
    language = str(ckpt.training.get("language", DEFAULT_LANGUAGE))
    train = trained_split(ckpt.training, args.data_dir, "train")
    values = build_values(train, ckpt.tokenizer, language)
    out = Path(args.out or Path(args.checkpoint).with_suffix(".onnx"))
    t0 = time.perf_counter()
    training = {k: ckpt.training.get(k) for k in ("data", "seed", "seconds", "best_epoch")}
    training["language"] = ckpt.training.get("language", DEFAULT_LANGUAGE)
    keys: tuple[str, ...] = ("test", "val", "test_context", "val_context", "paraphrases")
    keys += ("out_of_scope", "in_scope_test")
    metrics: dict[str, Any] = {k: ckpt.metrics[k] for k in keys if k in ckpt.metrics}
    done = package(
        ckpt.model,
        ckpt.tokenizer,
        ckpt.labels.intents,
        ckpt.labels.tags,
        out,
        metrics,
        training,
        calibration=ckpt.metrics.get("calibration"),
        values=values.to_dict(),
    )
    rows, meta, par = done.rows, done.meta, done.meta.parity
    print(
        f"exported {out} and checked parity on {len(rows)} cases in "
        f"{time.perf_counter() - t0:.1f} s"
    )
    print(format_table(rows))
    print(
        f"max abs diff {par['max_abs_diff']:.2e} vs torch float64 (tolerance {par['tolerance']:g});"
        f" vs torch float32 {par['max_abs_diff_torch_fp32']:.2e}"
    )
    size = out.stat().st_size
    print(f"wrote {out} ({size / 1024:.0f} KiB) with metadata key {METADATA_KEY!r}")
    if args.quantize:
        from export.quantize import compare, quantize

        qpath = out.with_suffix(".int8.onnx")
        quantize(out, qpath)
        cmp = compare(out, qpath, trained_split(ckpt.training, args.data_dir, "test"), meta)
        qmeta = ModelMetadata(
            **{**meta.__dict__, "metrics": {**meta.metrics, "int8_vs_float": cmp}}
        )
        embed_metadata(qpath, METADATA_KEY, qmeta.to_json())
        q, f = cmp["int8"], cmp["float"]
        print(
            f"int8: {qpath} ({cmp['int8_bytes'] / 1024:.0f} KiB, float "
            f"{cmp['float_bytes'] / 1024:.0f} KiB)  intent acc {q['intent_accuracy']:.4f} "
            f"(float {f['intent_accuracy']:.4f})  slot F1 {q['slot_f1']:.4f} "
            f"(float {f['slot_f1']:.4f})  agreement: intents {cmp['intent_agreement']:.4f}, "
            f"tags {cmp['tag_agreement']:.4f}"
        )
    return 0


def cmd_parity(args: argparse.Namespace) -> int:
    """Re-run the parity check of an exported model against its checkpoint."""
    from export.parity import check_parity, format_table
    from export.train import load_checkpoint

    rows = check_parity(load_checkpoint(args.checkpoint).model, args.onnx)
    print(format_table(rows))
    return 0


def cmd_kinds(args: argparse.Namespace) -> int:
    """Recompute the `kind` of every hand-written paraphrase against the current templates.

    Where the language's paraphrase file keeps its kinds (English), the file is rewritten;
    otherwise the marked sentences go to --out (default: the language's data folder), and
    the evaluation set stays as its writers left it."""
    from collections import Counter

    from export.quality import eval_path, load_paraphrases, mark_kinds

    lang = get_language(args.language)
    source = Path(args.file or eval_path("paraphrases.jsonl", args.language))
    para = load_paraphrases(source)
    trained = {e.text.lower() for e in generate(seed=args.seed, language=args.language)["train"]}
    out = mark_kinds(para, trained, args.language)
    if args.out:
        target = Path(args.out)
    elif lang.eval_kinds_in_file:
        target = source
    else:
        target = Path(lang.data_dir) / "paraphrases.kinds.jsonl"
    write_jsonl(target, out)
    print(json.dumps(dict(Counter(e.kind for e in out))))
    if target != source:
        print(f"wrote {target}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Evaluate exported models as the server runs them, with and without a context."""
    from export.context_eval import (
        Runner,
        evaluate,
        gold_values,
        out_of_scope_rejection,
        split_pools,
    )
    from export.quality import eval_path, load_out_of_scope

    pools = split_pools(args.seed, args.language)
    data_dir = Path(args.data_dir or get_language(args.language).data_dir)
    report: dict[str, Any] = {}
    for split in args.splits:
        exs = read_jsonl(data_dir / f"{split}.jsonl")
        golds = gold_values(exs, args.language)
        for path in args.onnx:
            runner = Runner(path)
            row = report.setdefault(str(path), {})
            row[split] = evaluate(runner, exs, golds, None, args.seed)
            if runner.takes_context:
                row[f"{split}_context"] = evaluate(runner, exs, golds, pools[split], args.seed)
            oos = eval_path("out_of_scope.txt", args.language)
            if oos.exists():
                row["out_of_scope_reject_rate"] = out_of_scope_rejection(
                    runner, load_out_of_scope(oos)
                )
    text = json.dumps(report, indent=2)
    print(text)
    if args.report:
        Path(args.report).parent.mkdir(parents=True, exist_ok=True)
        Path(args.report).write_text(text + "\n")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """Train each cell type briefly on the same data and compare them on validation."""
    from export.train import TrainConfig, train

    splits, _ = _load_splits(args)
    rows = []
    for cell, bi in [(cell, bi) for cell in CELLS for bi in (False, True)]:
        arch = {**_arch(args), "cell": cell, "bidirectional": bi}
        r = train(
            splits,
            arch,
            TrainConfig(seed=args.seed, epochs=args.epochs, progress=False, language=args.language),
            log=lambda m: None,
        )
        v, t = r.metrics["val"], r.metrics["test"]
        rows.append(
            {
                "cell": cell,
                "bidirectional": bi,
                "seconds": round(r.seconds, 1),
                "val_intent": v["intent_accuracy"],
                "val_slot_f1": v["slot_f1"],
                "test_intent": t["intent_accuracy"],
                "test_slot_f1": t["slot_f1"],
            }
        )
        print(
            f"{cell:4s} bi={bi!s:5s} {r.seconds:5.0f}s  val {v['intent_accuracy']:.4f}/"
            f"{v['slot_f1']:.4f}  test {t['intent_accuracy']:.4f}/{t['slot_f1']:.4f}",
            flush=True,
        )
    Path(args.report).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    p = argparse.ArgumentParser(prog="python -m export", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    def language_flag(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--language",
            choices=list(LANGUAGES),
            default=DEFAULT_LANGUAGE,
            help="templates, value pools, tokenizer and evaluation sets (default: en)",
        )

    def data_flags(sp: argparse.ArgumentParser) -> None:
        language_flag(sp)
        sp.add_argument("--seed", type=int, default=13)
        sp.add_argument("--train-file", help="JSONL training data (default: generated)")
        sp.add_argument("--val-file", help="JSONL validation data")
        sp.add_argument("--test-file", help="JSONL test data")
        sp.add_argument(
            "--data-dir",
            help="where the splits are written (default: build/data, for zh-CN build/data/zh-CN)",
        )

    def arch_flags(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--cell", choices=list(CELLS))
        sp.add_argument("--nonlinearity", choices=["tanh", "relu"])
        sp.add_argument("--bidirectional", action=argparse.BooleanOptionalAction, default=None)
        sp.add_argument("--num-layers", dest="num_layers", type=int)
        sp.add_argument("--embedding-dim", dest="embedding_dim", type=int)
        sp.add_argument("--hidden-size", dest="hidden_size", type=int)
        sp.add_argument("--dropout", type=float)

    d = sub.add_parser("data", help="write the generated splits as JSONL")
    language_flag(d)
    d.add_argument("--seed", type=int, default=13)
    d.add_argument("--out-dir", help="default: build/data, for zh-CN build/data/zh-CN")
    d.set_defaults(func=cmd_data)

    t = sub.add_parser("train", help="train a model")
    data_flags(t)
    arch_flags(t)
    t.add_argument(
        "--context",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="take the caller's home as an optional input (default: on for en, off otherwise)",
    )
    t.add_argument("--epochs", type=int, default=30)
    t.add_argument(
        "--train-seed",
        type=int,
        help="seed of the initial weights, the batch order and the dropout (default: --seed, "
        "which also draws the data split)",
    )
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--no-progress", action="store_true")
    t.add_argument(
        "--out-of-scope",
        type=int,
        default=4000,
        help="generated out-of-scope sentences to train on (0: none)",
    )
    t.add_argument(
        "--patience",
        type=int,
        help="epochs without validation gain before stopping (default: 30 for en, 6 otherwise)",
    )
    t.add_argument(
        "--slot-span-dropout",
        type=float,
        help="probability that a whole slot value turns into <unk> (default: 0.5 for en, 0.35)",
    )
    t.add_argument(
        "--slot-word-swap",
        type=float,
        default=0.0,
        help="probability that a word of a name, area or floor turns into a random vocabulary "
        "word (default: 0)",
    )
    t.add_argument(
        "--oos-weight",
        type=float,
        help="weight of the out-of-scope sentences' loss (default: 1.0 for en, 0.5 otherwise)",
    )
    t.add_argument(
        "--context-share",
        type=float,
        default=0.5,
        help="share of the training sentences that get a simulated home (with --context)",
    )
    t.add_argument(
        "--min-count",
        type=int,
        default=12,
        help="words seen fewer times in training map to <unk> (1: keep every word)",
    )
    t.add_argument(
        "--distill",
        metavar="CHECKPOINT",
        nargs="+",
        help="teacher checkpoints (several: the mean of their logits) whose intent and tag "
        "distributions the rows trained without a context also learn (default: none)",
    )
    t.add_argument(
        "--distill-weight",
        type=float,
        default=1.0,
        help="weight of the distillation term (with --distill)",
    )
    t.add_argument(
        "--distill-temperature",
        type=float,
        default=1.0,
        help="softmax temperature of teacher and student in the distillation term",
    )
    t.add_argument(
        "--distill-out-of-scope",
        action="store_true",
        help="distil the out-of-scope rows' intents too (default: they keep the uniform target)",
    )
    t.add_argument(
        "--distill-online",
        action="store_true",
        help="run the teacher each batch on the student's input, its word dropout included "
        "(default: once on the clean sentences)",
    )
    t.add_argument(
        "--distill-mix",
        action="store_true",
        help="the rows without a context learn (1 - weight) x their labels + weight x the "
        "teacher, weight in [0, 1] (default: the teacher's term is added, the labels kept whole)",
    )
    t.add_argument("--out", help="default: models/intent.pt, for zh-CN models/intent-zh.pt")
    t.add_argument(
        "--report", help="default: models/intent.report.json, for zh-CN models/intent-zh.*"
    )
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("export", help="export a checkpoint to ONNX and check parity")
    e.add_argument("--checkpoint", default="models/intent.pt")
    e.add_argument("--out", help="default: the checkpoint's path ending in .onnx")
    e.add_argument("--quantize", action="store_true", help="also write an int8 variant")
    e.add_argument(
        "--data-dir",
        help="training split (value tables) and test split (--quantize); default: the language's",
    )
    e.set_defaults(func=cmd_export)

    c = sub.add_parser("parity", help="re-check parity of an exported model")
    c.add_argument("--checkpoint", default="models/intent.pt")
    c.add_argument("--onnx", default="models/intent.onnx")
    c.set_defaults(func=cmd_parity)

    k = sub.add_parser("kinds", help="re-mark paraphrases: template / extra / novel")
    language_flag(k)
    k.add_argument("--seed", type=int, default=13)
    k.add_argument("--file", help="paraphrase JSONL (default: the language's evaluation set)")
    k.add_argument(
        "--out", help="where to write (default: English in place, others build/data/<lang>/)"
    )
    k.set_defaults(func=cmd_kinds)

    v = sub.add_parser(
        "evaluate", help="exported models as served: with and without context, canonical values"
    )
    language_flag(v)
    v.add_argument("--seed", type=int, default=13)
    v.add_argument("onnx", nargs="+", help="exported model files")
    v.add_argument("--splits", nargs="+", default=["val"], help="splits to score (default: val)")
    v.add_argument("--data-dir", help="where the splits are (default: the language's)")
    v.add_argument("--report", help="also write the figures here (JSON)")
    v.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("sweep", help="compare cell types on validation")
    data_flags(s)
    arch_flags(s)
    s.add_argument("--epochs", type=int, default=12)
    s.add_argument("--report", default="build/sweep.json")
    s.set_defaults(func=cmd_sweep)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point: errors in the data or the model become one line and exit status 2."""
    args = build_parser().parse_args(argv)
    from export.parity import ParityError

    try:
        return int(args.func(args))
    except (DataError, ParityError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
