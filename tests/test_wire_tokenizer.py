"""Signs and combining marks over the wire, with the shipped default model."""

from __future__ import annotations

import pytest

from client import Client

from .conftest import DEFAULT_ONNX
from .serving import RunningServer, settings_for


@pytest.fixture(scope="module")
def client():
    with RunningServer(settings_for(DEFAULT_ONNX)) as srv, Client(srv.target, timeout=10) as c:
        yield c


def _slots(r):
    return [(s.name, s.value) for s in r.slots]


@pytest.mark.parametrize("minus", ["-", "\u2212"])
def test_a_negative_temperature_keeps_its_sign(client, minus):
    text = f"set the freezer to {minus}18 degrees"
    r = client.parse(text)
    plain = client.parse("set the freezer to 18 degrees")
    assert r.intent.name == plain.intent.name == "HassClimateSetTemperature"
    # The sign changes the temperature's value and nothing else of the answer.
    assert ("temperature", f"{minus}18") in _slots(r)
    assert _slots(r) == [(n, f"{minus}18" if n == "temperature" else v) for n, v in _slots(plain)]
    slot = next(s for s in r.slots if s.name == "temperature")
    assert text[slot.char_start : slot.char_end] == f"{minus}18"
    assert [t.id for t in r.tokens] == [t.id for t in plain.tokens]  # "-18" maps to <num> as "18"
    assert r.tokens[4].text == f"{minus}18"


def test_a_range_does_not_become_a_negative_number(client):
    r = client.parse("set the temperature to 10-15 degrees")
    assert [t.text for t in r.tokens][4:6] == ["10", "15"]
    assert all(not s.value.startswith("-") for s in r.slots)


def test_a_decomposed_accent_stays_inside_its_word(client):
    text = "turn on the lights in the cafe\u0301"
    r = client.parse(text)
    composed = client.parse("turn on the lights in the caf\u00e9")
    assert r.tokens[-1].text == "caf\u00e9"
    assert (r.tokens[-1].char_start, r.tokens[-1].char_end) == (26, 31)
    assert [t.id for t in r.tokens] == [t.id for t in composed.tokens]
    assert r.intent.name == composed.intent.name
    assert _slots(r) == [("area", "cafe\u0301")]
    assert _slots(composed) == [("area", "caf\u00e9")]
