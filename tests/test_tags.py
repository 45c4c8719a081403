"""BIO decoding: the constrained best path the server and the evaluation share."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from modelspec.tags import allowed_transitions, best_tags, decode_bio, viterbi

TAGS = ["O", "B-area", "I-area", "B-name", "I-name"]


def _valid(path: list[int], start: np.ndarray, trans: np.ndarray) -> bool:
    return bool(start[path[0]]) and all(trans[a, b] for a, b in itertools.pairwise(path))


def test_transitions_forbid_orphan_inside_tags() -> None:
    start, trans = allowed_transitions(TAGS)
    assert start.tolist() == [True, True, False, True, False]
    i_area, i_name = TAGS.index("I-area"), TAGS.index("I-name")
    assert [bool(trans[i, i_area]) for i in range(5)] == [False, True, True, False, False]
    assert [bool(trans[i, i_name]) for i in range(5)] == [False, False, False, True, True]
    assert trans[:, TAGS.index("O")].all() and trans[:, TAGS.index("B-name")].all()


@pytest.mark.parametrize("seed", range(40))
def test_viterbi_is_the_best_valid_path(seed: int) -> None:
    rng = np.random.default_rng(seed)
    t_len = int(rng.integers(1, 6))
    logp = np.log(rng.dirichlet(np.ones(len(TAGS)) * 0.5, size=t_len))
    start, trans = allowed_transitions(TAGS)
    brute = max(
        (
            p
            for p in itertools.product(range(len(TAGS)), repeat=t_len)
            if _valid(list(p), start, trans)
        ),
        key=lambda p: sum(logp[t, k] for t, k in enumerate(p)),
    )
    got = viterbi(logp, start, trans)
    assert _valid(got, start, trans)
    assert np.isclose(
        sum(logp[t, k] for t, k in enumerate(got)), sum(logp[t, k] for t, k in enumerate(brute))
    )
    fast = best_tags(logp, start, trans).tolist()
    assert np.isclose(
        sum(logp[t, k] for t, k in enumerate(fast)), sum(logp[t, k] for t, k in enumerate(brute))
    )


def test_best_tags_repairs_an_orphan_inside_tag() -> None:
    # argmax says O I-area I-area: the repaired path opens the entity with B-area.
    p = np.full((3, 5), 0.01)
    p[0, TAGS.index("O")], p[0, TAGS.index("B-area")] = 0.6, 0.3
    p[1, TAGS.index("I-area")] = 0.9
    p[2, TAGS.index("I-area")] = 0.9
    start, trans = allowed_transitions(TAGS)
    got = [TAGS[i] for i in best_tags(np.log(p), start, trans)]
    assert got == ["B-area", "I-area", "I-area"]
    assert [(e.slot, e.start, e.end) for e in decode_bio(got)] == [("area", 0, 3)]


def test_best_tags_keeps_a_valid_argmax_and_handles_empty() -> None:
    start, trans = allowed_transitions(TAGS)
    p = np.log(np.eye(5)[[1, 2, 0, 3, 4]] * 0.9 + 0.02)
    assert best_tags(p, start, trans).tolist() == [1, 2, 0, 3, 4]
    assert best_tags(np.zeros((0, 5)), start, trans).tolist() == []
