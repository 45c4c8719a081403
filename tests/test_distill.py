"""Distillation from a teacher checkpoint into the rows trained without a context."""

from __future__ import annotations

import pytest
import torch

from modelspec.batch import pad_rows
from modelspec.context import CONFIG_CONTEXT_DIM, CONTEXT_DIM

INTENTS = ("HassTurnOn", "HassTurnOff", "HassGetCurrentTime")


@pytest.fixture(scope="module")
def small(splits):
    return {
        name: [e for e in splits[name] if e.intent in INTENTS][:n]
        for name, n in (("train", 200), ("val", 60), ("test", 60))
    }


def _checkpoint(result):
    from export.train import Checkpoint

    return Checkpoint(result.model, result.tokenizer, result.labels, result.metrics, {})


def test_teacher_distributions_follow_the_students_label_names():
    from export.train import _in_student_order, _label_map

    columns = _label_map(["a", "b", "c"], ["c", "a", "d"])
    assert columns.tolist() == [2, 0, -1]
    p = _in_student_order(torch.tensor([[0.0, 1.0, 2.0]]), columns, 1.0)
    e = torch.exp(torch.tensor([2.0, 0.0]))
    assert torch.allclose(p, torch.tensor([[e[0] / e.sum(), e[1] / e.sum(), 0.0]]))


def test_distillation_changes_training_only_with_a_weight(small):
    from export.train import TrainConfig, make_teacher, train

    cfg = TrainConfig(epochs=2, out_of_scope=50, min_count=1, progress=False)
    teacher = _checkpoint(
        train(small, {"hidden_size": 8, "embedding_dim": 4}, cfg, log=lambda m: None)
    )
    arch = {"hidden_size": 8, "embedding_dim": 4, CONFIG_CONTEXT_DIM: CONTEXT_DIM}

    def run(weight: float, with_teacher: bool = True):
        c = TrainConfig(**{**cfg.__dict__, "distill_weight": weight, "distill_temperature": 2.0})
        return train(small, arch, c, log=lambda m: None, teacher=teacher if with_teacher else None)

    plain, zero, pulled = run(0.0, with_teacher=False), run(0.0), run(1.0)
    a, b, c = (r.model.state_dict() for r in (plain, zero, pulled))
    assert all(torch.equal(a[k], b[k]) for k in a)  # the context draws are unchanged
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert pulled.history[0]["loss"] > plain.history[0]["loss"]

    from export.train import prepare

    enc = prepare(small, cfg).encoded["train"]
    once = make_teacher(teacher, enc, teacher.labels, 2.0, online=False)
    assert once.cache is not None and [len(t) for t in once.cache[1]] == [len(r) for r in enc.ids]
    assert torch.allclose(once.cache[0].sum(-1), torch.ones(len(enc.ids)))
    online = make_teacher(teacher, enc, teacher.labels, 2.0, online=True)
    idx = [0, 1, 2]
    ids, lengths = pad_rows([enc.ids[i] for i in idx])
    clean = (torch.from_numpy(ids), torch.from_numpy(lengths), enc)
    for a, b in zip(online.batch(idx, *clean), once.batch(idx, *clean), strict=True):
        assert torch.allclose(a, b, atol=1e-6)  # on clean input both read the same


def test_a_mixed_distillation_shares_each_distilled_rows_weight():
    from export.train import IGNORE_TAG, TrainConfig, _kl, _loss, _mixed_loss
    from modelspec.names import INTENT_LOGITS, SLOT_LOGITS

    torch.manual_seed(0)
    out = {INTENT_LOGITS: torch.randn(4, 5), SLOT_LOGITS: torch.randn(4, 3, 7)}
    tags = torch.randint(0, 7, (4, 3))
    tags[2], tags[3, 2] = IGNORE_TAG, IGNORE_TAG
    intents = torch.tensor([1, -1, 3, 0])
    keep = torch.tensor([True, False, True, True])
    targets = (torch.softmax(torch.randn(4, 5), -1), torch.softmax(torch.randn(4, 3, 7), -1))
    none = TrainConfig(distill_weight=0.0, oos_weight=1.0)
    assert torch.allclose(
        _mixed_loss(out, targets, keep, tags, intents, none), _loss(out, tags, intents, 1.0)
    )
    only = TrainConfig(distill_weight=1.0, oos_weight=1.0)
    everything = torch.ones(4, dtype=torch.bool)
    valid = tags != IGNORE_TAG
    want = _kl(out[INTENT_LOGITS], targets[0], 1.0).mean()
    want = want + _kl(out[SLOT_LOGITS][valid], targets[1][valid], 1.0).mean()
    intents_in = torch.tensor([1, 2, 3, 0])
    got = _mixed_loss(out, targets, everything, tags, intents_in, only)
    assert torch.allclose(got, want)


def test_several_teachers_teach_the_mean_of_their_logits(small):
    from dataclasses import replace

    from export.train import TrainConfig, forward_by_name, make_teacher, prepare, teacher_of, train
    from modelspec.names import INTENT_LOGITS, SLOT_LOGITS

    arch = {"hidden_size": 8, "embedding_dim": 4}
    cfgs = [
        TrainConfig(epochs=1, out_of_scope=50, min_count=1, progress=False, train_seed=s)
        for s in (1, 2)
    ]
    a, b = (_checkpoint(train(small, arch, c, log=lambda m: None)) for c in cfgs)
    both = teacher_of([a, b])
    enc = prepare(small, cfgs[0]).encoded["train"]
    ids, lengths = pad_rows(enc.ids[:4])
    x = (torch.from_numpy(ids), torch.from_numpy(lengths))
    with torch.no_grad():
        outs = [forward_by_name(c.model, *x) for c in (a, b, both)]
    for name in (INTENT_LOGITS, SLOT_LOGITS):
        assert torch.allclose(outs[2][name], (outs[0][name] + outs[1][name]) / 2, atol=1e-6)
    assert not torch.equal(outs[0][INTENT_LOGITS], outs[1][INTENT_LOGITS])  # seeds differ
    taught = make_teacher(both, enc, both.labels, 1.0, online=False)
    assert taught.cache is not None
    want = torch.softmax(outs[2][INTENT_LOGITS], -1)
    assert torch.allclose(taught.cache[0][:4], want, atol=1e-5)
    with pytest.raises(ValueError, match="vocabulary"):
        teacher_of([a, replace(b, labels=replace(b.labels, intents=b.labels.intents[::-1]))])
