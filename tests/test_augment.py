"""Training-time input noise: names, areas and floors swapped for random vocabulary words."""

from __future__ import annotations

import numpy as np

TAGS = ["O", "B-area", "I-area", "B-name", "I-name", "B-state", "I-state"]


def _encoded():
    from export.data import Example
    from export.train import Encoded

    # "turn the front music room lamp off": area "front music room", state "off"
    ids = [10, 11, 12, 13, 14, 15, 16]
    tags = [0, 0, 1, 2, 2, 0, 5]
    mask = [t != 0 for t in tags]
    spans = [-1, -1, 0, 0, 0, -1, 1]
    return Encoded([ids], [tags], [0], [mask], [Example("x", "HassTurnOff")], [spans])


def _swap(p: float):
    swappable = np.asarray([t[2:] in ("name", "area", "floor") for t in TAGS[1:]], dtype=bool)
    return p, np.concatenate([[False], swappable]), 40


def test_the_swap_changes_only_words_of_names_areas_and_floors():
    from export.train import _tensors
    from modelspec.names import SPECIAL_TOKENS

    enc = _encoded()
    changed = np.zeros(7, dtype=bool)
    for seed in range(20):
        rng = np.random.default_rng(seed)
        ids, _, tags, _ = _tensors(enc, [0], (0.0, 0.0, 0.0), rng, swap=_swap(1.0))
        row = ids[0].numpy()
        assert tags[0].tolist() == enc.tags[0]  # the labels stay
        assert row[[0, 1, 5, 6]].tolist() == [10, 11, 15, 16]  # outside and the state: kept
        assert all(len(SPECIAL_TOKENS) <= w < 40 for w in row[2:5])
        changed |= row != np.asarray(enc.ids[0])
    assert changed.tolist() == [False, False, True, True, True, False, False]


def test_no_swap_and_a_dropped_word_are_left_as_they_are():
    from export.train import _tensors
    from modelspec.names import UNK_ID

    enc = _encoded()
    rng = np.random.default_rng(0)
    ids, *_ = _tensors(enc, [0], (0.0, 0.0, 0.0), rng, swap=_swap(0.0))
    assert ids[0].tolist() == enc.ids[0]
    # every slot word dropped to <unk>: the swap leaves <unk> alone
    ids, *_ = _tensors(enc, [0], (0.0, 1.0, 0.0), rng, swap=_swap(1.0))
    assert ids[0].tolist() == [10, 11, UNK_ID, UNK_ID, UNK_ID, 15, UNK_ID]
