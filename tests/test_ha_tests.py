"""export/ha_tests.py, the outside measure: reading Home Assistant-shaped test files and scoring
a real server's answers (the files here are written for the test, in that shape)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from export import ha_tests

FIXTURES = """
floors:
  - name: Upstairs
    id: upstairs
areas:
  - name: Kitchen
    id: kitchen
    floor: upstairs
entities:
  - name: Zorblat Lamp
    id: light.zorblat_lamp
    area: kitchen
"""

LIGHTS = """
language: en
tests:
  - sentences:
      - "turn on the zorblat lamp"
    intent:
      name: HassTurnOn
      slots:
        name: light.zorblat_lamp
  - sentences:
      - "turn off all the lights in the kitchen"
    intent:
      name: HassTurnOff
      slots:
        area: kitchen
        domain: light
        name: all
  - sentences:
      - "set the brightness to fifty percent"
    intent:
      name: HassLightSet
      context:
        area: Kitchen
      slots:
        brightness: [50, 55]
        area: Kitchen
"""


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    (tmp_path / "_fixtures.yaml").write_text(FIXTURES)
    (tmp_path / "light_HassTurnOn.yaml").write_text(LIGHTS)
    (tmp_path / "_common.yaml").write_text("language: en\n")  # skipped: starts with _
    return tmp_path


def test_cases_keep_what_the_sentence_can_carry(folder):
    tally = ha_tests.Tally()
    cases, files = ha_tests.read_cases(folder, tally)
    assert files == ["light_HassTurnOn.yaml"]
    assert [c.sentence for c in cases] == [
        "turn on the zorblat lamp",
        "turn off all the lights in the kitchen",
        "set the brightness to fifty percent",
    ]
    # an entry id also matches the entry's name; numbers compare as numbers
    assert cases[0].slots == {"name": ["light.zorblat lamp", "zorblat lamp"]}
    assert cases[1].slots == {"area": ["kitchen"], "domain": ["light"]}
    assert cases[2].slots == {"brightness": ["50", "55"]}
    # `name: all` and a value only the test's own context gives are left out, and counted
    assert (tally.left_out_all, tally.left_out_context, tally.left_out_other) == (1, 1, 0)
    assert cases[0].home["entities"][0]["id"] == "light.zorblat_lamp"


def test_a_served_model_is_scored_on_the_files(folder, tmp_path):
    out = tmp_path / "report.json"
    assert ha_tests.main([str(folder), "--context", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert (report["files"], report["sentences"], report["slot_values"]) == (1, 3, 4)
    assert report["intent_accuracy"] == 1.0  # three plain commands of intents it has
    # with the context the lamp resolves to its id, the kitchen to its area, fifty to 50, and
    # the implied domain counts as the domain slot
    assert report["slot_values_found"] == 1.0, report["miss_kinds"]
