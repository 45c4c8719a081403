"""The caller's home as context, as a new user meets it: odd but valid homes and fixtures files,
entries without ids, streams, the CLI. Real servers on port 0 with the committed models."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import pytest

from client.api import Client

from .conftest import ROOT
from .serving import ENV, RunningServer, settings_for

MODELS = ROOT / "models"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One server with the English, streaming English and Chinese models."""
    repo = tmp_path_factory.mktemp("repository")
    for name in ("intent", "intent-stream", "intent-zh"):
        (repo / f"{name}.onnx").symlink_to(MODELS / f"{name}.onnx")
    settings = settings_for(MODELS / "intent.onnx", model_repository=str(repo))
    with RunningServer(replace(settings, default_model="intent")) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    with Client(server.target) as c:
        yield c


def _resolved(r) -> list[tuple[str, str, str, str, str]]:
    return [(s.name, s.value, s.canonical, s.entry_id, s.entry_name) for s in r.slots]


# ---------------------------------------------------------------- entries without ids


def test_an_entry_without_an_id_answers_its_name_as_the_canonical_value(client):
    """Home Assistant's id is optional: a slot naming an entry without one still has the entry's
    registered name as its canonical value, as one with an id does."""
    home = {
        "floors": [{"name": "Mezzanine"}],
        "areas": [{"name": "Snug"}],
        "entities": [{"name": "Zorblat Lamp"}],
    }
    r = client.parse("turn on the zorblat lamp", context=home)
    assert _resolved(r) == [("name", "zorblat lamp", "Zorblat Lamp", "", "Zorblat Lamp")]
    r = client.parse("turn off the lights in the snug", context=home)
    assert [x for x in _resolved(r) if x[0] == "area"] == [("area", "snug", "Snug", "", "Snug")]


def test_the_cli_json_shows_the_entry_of_a_slot_whose_entry_has_no_id(server, tmp_path):
    path = tmp_path / "home.json"
    path.write_text(json.dumps({"entities": [{"name": "Zorblat Lamp"}]}))
    out = subprocess.run(
        [sys.executable, "-m", "client", "parse", "--target", server.target, "--json"]
        + ["--context", str(path), "turn on the zorblat lamp"],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    (slot,) = json.loads(out.stdout)["slots"]
    assert (slot["canonical"], slot["entry_id"], slot["entry_name"]) == (
        "Zorblat Lamp",
        "",
        "Zorblat Lamp",
    )
