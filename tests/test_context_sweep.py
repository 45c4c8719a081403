"""The caller's home as context, as a new user meets it: odd but valid homes and fixtures files,
entries without ids, streams, the CLI. Real servers on port 0 with the committed models."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from client.api import Client, RnnServeError
from client.context import ContextError, prepare_context, read_context
from modelspec.context import CONTEXT_KINDS, Match, snap_tags
from modelspec.tags import decode_bio
from rnnserve.v1 import rnnserve_pb2 as pb
from rnnserve.v1 import rnnserve_pb2_grpc as pb_grpc

from .conftest import ROOT
from .serving import RunningServer, cli, settings_for

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
    out = cli(
        "parse",
        "--target",
        server.target,
        "--json",
        "--context",
        str(path),
        "turn on the zorblat lamp",
    )
    assert out.returncode == 0, out.stderr
    (slot,) = json.loads(out.stdout)["slots"]
    assert (slot["canonical"], slot["entry_id"], slot["entry_name"]) == (
        "Zorblat Lamp",
        "",
        "Zorblat Lamp",
    )


# ---------------------------------------------------------------- files and dicts as written

SCALARS = """entities:
  - name: 0x1F
    id: light.hex
  - name: 1_000
    id: light.thousand
  - name: Zorblat Lamp
    id: light.zorblat
    aliases: Yes Lamp
  - name: Quillon
    id: switch.quillon
    aliases: [Off Switch, 12:30]
"""


def test_a_fixtures_file_gives_names_as_written_and_one_alias_without_a_list(client, tmp_path):
    """YAML reads `0x1F` as 31 and `Yes` as true; a name or alias is the text written, and an
    `aliases` of one string is that alias (not a list of its letters, nor an error)."""
    path = tmp_path / "_fixtures.yaml"
    path.write_text(SCALARS)
    home = read_context(path)
    assert [(e.name, list(e.aliases)) for e in home.entities] == [
        ("0x1F", []),
        ("1_000", []),
        ("Zorblat Lamp", ["Yes Lamp"]),
        ("Quillon", ["Off Switch", "12:30"]),
    ]
    for text, entry in (
        ("turn on 0x1f", ("0x1F", "light.hex")),
        ("turn on 1_000", ("1_000", "light.thousand")),
        ("turn on the yes lamp", ("Zorblat Lamp", "light.zorblat")),
    ):
        r = client.parse(text, context=home)
        assert [(s.entry_name, s.entry_id) for s in r.slots if s.entry_name] == [entry], text
    number = tmp_path / "home.json"
    number.write_text('{"entities": [{"name": 1.10, "id": "light.v", "aliases": [7]}]}')
    assert [(e.name, list(e.aliases)) for e in read_context(number).entities] == [("1.10", ["7"])]


@pytest.mark.parametrize(
    ("home", "needle"),
    [
        ({"entities": [{"name": ["a", "b"]}]}, "entities[0].name must be text, not a list"),
        ({"areas": [{"name": "A", "id": {"x": 1}}]}, "areas[0].id must be text, not a mapping"),
        ({"floors": [{"name": True}]}, "floors[0].name must be text, not true or false"),
        ({"entities": [{"name": "a", "aliases": ["b", None]}]}, "entities[0].aliases[1] is empty"),
        ({"entities": [{"name": "a", "aliases": [["b"]]}]}, "aliases[0] must be text, not a list"),
        ({"entities": [{"name": "lamp\ud800"}]}, "entities[0] holds text that is not UTF-8"),
    ],
)
def test_a_dict_context_of_values_that_are_not_text_is_refused_naming_the_entry(home, needle):
    """Python's repr never travels as a name ("['a', 'b']", "None"), and a lone surrogate is a
    ContextError naming the entry, not a UnicodeEncodeError from protobuf."""
    with pytest.raises(ContextError) as err:
        prepare_context(home)
    assert needle in str(err.value)


@pytest.mark.parametrize("aliases", [("the glow",), {"the glow", "glowy"}])
def test_a_dict_context_may_use_tuples_and_sets(client, aliases):
    """Home Assistant's own entries hold aliases as sets (they were refused: not a list)."""
    home = {"entities": ({"name": "Zorblat Lamp", "id": "light.z", "aliases": aliases},)}
    assert sorted(prepare_context(home).message.entities[0].aliases) == sorted(aliases)
    r = client.parse("turn on the glow", context=home)
    assert [(s.entry_id, s.canonical) for s in r.slots if s.entry_id] == [
        ("light.z", "Zorblat Lamp")
    ]


HA_FIXTURES = """language: "en"
areas:
  - name: "(Snug|Cozy Nook)"
    id: "snug_id"
entities:
  - name: "Trader Joe[']s"
    id: "todo.trader_joes"
    state: ""
  - name: "Bob"
    id: "person.bob"
    state: "home"
    is_exposed: false
    attributes:
      device_class: "(not a name)"
  - name: "Zorblat Lamp"
    id: "light.zorblat"
"""


def test_a_fixtures_file_reads_template_names(client, tmp_path):
    """Home Assistant's fixtures write some names as templates ("Trader Joe[']s"); the file is
    read as its test harness reads it: every expansion a name of the entry, the first its
    registered name (only names and aliases are read so)."""
    path = tmp_path / "_fixtures.yaml"
    path.write_text(HA_FIXTURES)
    home = read_context(path)
    assert [(e.name, list(e.aliases)) for e in [*home.areas, *home.entities]] == [
        ("Snug", ["Cozy Nook"]),
        ("Trader Joe's", ["Trader Joes"]),
        ("Bob", []),
        ("Zorblat Lamp", []),
    ]
    for text, kind, entry in (
        ("add milk to my trader joe's list", "name", "todo.trader_joes"),
        ("add milk to my trader joes list", "name", "todo.trader_joes"),
        ("turn off the lights in the cozy nook", "area", "snug_id"),
    ):
        r = client.parse(text, context=home)
        assert [(s.name, s.entry_id) for s in r.slots if s.entry_id] == [(kind, entry)], text
    bad = tmp_path / "bad.yaml"
    bad.write_text('entities:\n  - name: "Lamp (old"\n')
    with pytest.raises(ContextError, match=r"entities\[0\]\.name 'Lamp \(old' is not a template"):
        read_context(bad)


# ---------------------------------------------------------------- the server's checks


@pytest.mark.parametrize(
    ("home", "needle"),
    [
        ({"floors": [{"name": "up\rstairs"}]}, "context.floors[0].name holds a line break"),
        (
            {"areas": [{"name": "Snug", "aliases": ["nook", "cozy\r\nnook"]}]},
            "context.areas[0].aliases[1] holds a line break",
        ),
    ],
)
def test_a_carriage_return_is_a_line_break_in_a_name(client, home, needle):
    """Names are single lines: a carriage return is refused as a newline is."""
    with pytest.raises(RnnServeError) as err:
        client.parse("turn on the lights upstairs", context=home)
    assert err.value.code == "INVALID_ARGUMENT" and needle in err.value.message


def _chunks(*messages: pb.ParseStreamRequest):
    yield from messages


@pytest.mark.parametrize("entities", [1, 60])  # 60: the context is read apart from the message
def test_a_context_on_a_later_stream_message_is_invalid_argument(server, entities):
    """A stream reads its home from the first message; a later message carrying one (another
    home, or a bad one) is refused rather than silently ignored."""
    home = pb.HomeContext()
    for i in range(entities):
        home.entities.add(name=f"Zorblat {i}", id=f"light.z{i}")
    with grpc.insecure_channel(server.target) as ch:
        stub = pb_grpc.ParserStub(ch)
        first = pb.ParseStreamRequest(model="intent-stream", text="turn on the ")
        later = pb.ParseStreamRequest(model="intent-stream", text="zorblat 0", context=home)
        answers = stub.ParseStream(_chunks(first, later), timeout=10)
        assert next(answers).chunk_index == 0
        with pytest.raises(grpc.RpcError) as err:
            next(answers)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "first message only" in err.value.details()
        ok = list(stub.ParseStream(_chunks(later, first), timeout=10))
        assert [a.chunk_index for a in ok] == [0, 1]


def test_a_later_stream_message_naming_another_model_is_invalid_argument(server):
    """A stream stays on its first message's model and version: a later message naming another
    was answered by the first's, as if it had not said so."""
    with grpc.insecure_channel(server.target) as ch:
        stub = pb_grpc.ParserStub(ch)
        first = pb.ParseStreamRequest(model="intent-stream", text="turn on the ")
        same = [
            pb.ParseStreamRequest(text="kitchen "),
            pb.ParseStreamRequest(model="intent-stream", version="1", text="lights"),
        ]
        assert [a.chunk_index for a in stub.ParseStream(_chunks(first, *same), timeout=10)] == [
            0,
            1,
            2,
        ]
        for later in (
            pb.ParseStreamRequest(model="intent-zh-stream", text="灯"),
            pb.ParseStreamRequest(version="7", text="lights"),
        ):
            answers = stub.ParseStream(_chunks(first, later), timeout=10)
            assert next(answers).chunk_index == 0
            with pytest.raises(grpc.RpcError) as err:
                next(answers)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "the stream runs on model 'intent-stream' version '1'" in err.value.details()


@pytest.mark.parametrize("fillers", [0, 60])  # 60: a context read apart and kept by its bytes
def test_an_id_is_at_most_255_characters(client, fillers):
    """An answer repeats the id of every slot naming the entry: an id of megabytes made each
    such slot megabytes (gRPC then refused the answer with its own message). Home Assistant's
    entity ids are at most 255 characters."""
    others = [{"name": f"lamp {i}", "id": f"light.l{i}"} for i in range(fillers)]
    longest = "light." + "z" * 249
    home = {"entities": [*others, {"name": "Zorblat", "id": longest}]}
    r = client.parse("turn on zorblat", context=home)
    assert [s.entry_id for s in r.slots if s.entry_id] == [longest]
    home["entities"][-1]["id"] = longest + "z"
    with pytest.raises(RnnServeError) as err:
        client.parse("turn on zorblat", context=home)
    assert err.value.code == "INVALID_ARGUMENT"
    assert err.value.message == (
        f"context.entities[{fillers}].id has 256 characters; the limit is 255"
    )


@pytest.mark.parametrize(
    ("model", "name", "text"),
    [
        (
            "intent",
            "Very Big Old Zorblat Lamp Over The Long Dining Table",  # 10 tokens
            "turn on the very big old zorblat lamp over the long dining table",
        ),
        ("intent-zh", "客厅北侧落地阅读灯", "打开客厅北侧落地阅读灯"),  # a token per character: 9
    ],
)
def test_a_name_of_many_words_matches(client, model, name, text):
    """A name of 1 to 100 characters matches however many tokens it has (names of more than 8
    never matched: in Chinese, any name of more than 8 characters)."""
    home = {"entities": [{"name": name, "id": "light.long"}, {"name": "Lamp", "id": "light.l"}]}
    r = client.parse(text, context=home, model=model)
    assert [(s.name, s.entry_name, s.entry_id) for s in r.slots] == [("name", name, "light.long")]


# ---------------------------------------------------------------- long utterances, many matches


def _snap_reference(tags: list[str], matches: list[Match]) -> list[str]:
    """snap_tags as specified, decoding every slot again for each match (quadratic)."""
    out = list(tags)
    for m in matches:
        over = [e for e in decode_bio(out) if e.start < m.end and m.start < e.end]
        if any(e.slot not in CONTEXT_KINDS for e in over):
            continue
        first = min(m.entries, key=CONTEXT_KINDS.index)
        kind = next((e.slot for e in over if e.slot in m.entries), first)
        for e in over:
            out[e.start : e.end] = ["O"] * (e.end - e.start)
        out[m.start : m.end] = [f"B-{kind}"] + [f"I-{kind}"] * (m.end - m.start - 1)
    for t in range(1, len(out)):
        if out[t].startswith("I-") and out[t - 1][2:] != out[t][2:]:
            out[t] = "B-" + out[t][2:]
    return out


KINDS = ["name", "area", "floor", "brightness", "state"]


@st.composite
def tags_and_matches(draw):
    """Valid BIO tags (the first may continue an earlier chunk's slot) and sorted,
    non-overlapping matches of one to three kinds."""
    n = draw(st.integers(0, 14))
    tags: list[str] = []
    for i in range(n):
        kind = draw(st.sampled_from(KINDS))
        prev = tags[-1] if tags else ("O" if not draw(st.booleans()) else f"I-{kind}")
        choice = draw(st.sampled_from(["O", "B", "I"]))
        if choice == "I" and (i == 0 or prev != "O"):
            tags.append(prev if i == 0 else "I-" + prev[2:])
        else:
            tags.append("O" if choice == "O" else f"B-{kind}")
    matches, i = [], 0
    while i < n:
        if draw(st.booleans()):
            end = draw(st.integers(i + 1, min(n, i + 4)))
            kinds = draw(st.sets(st.sampled_from(CONTEXT_KINDS), min_size=1))
            matches.append(Match(i, end, {k: [0] for k in sorted(kinds)}))
            i = end
        else:
            i += 1
    return tags, matches


@settings(max_examples=400, deadline=None, database=None)
@given(tags_and_matches())
def test_snapping_equals_decoding_every_slot_again_for_each_match(case):
    """Snapping keeps the decoded slots up to date as it goes (it decoded every slot again for
    each match: 280 ms for 511 one-word matches) and answers as that did."""
    tags, matches = case
    assert snap_tags(tags, matches) == _snap_reference(tags, matches)


def test_an_utterance_of_511_matches_answers_every_one(client):
    home = {"entities": [{"name": "A", "id": "light.z"}]}  # the tagger leaves "a" untagged
    r = client.parse("a " * 511, context=home)
    assert len(r.tokens) == 511
    resolved = [(s.token_start, s.entry_id) for s in r.slots if s.entry_id]
    assert resolved == [(i, "light.z") for i in range(511)]


def test_a_stream_of_many_matched_words_resolves_every_slot_in_every_answer(client):
    """Each answer resolves every slot so far, by a lookup per slot (each slot scanned every
    match: a 2,000-chunk stream took 88 s, now 49 s, the answers themselves growing)."""
    home = {"entities": [{"name": "A", "id": "light.z"}]}
    answers = list(client.stream(["a "] * 40, model="intent-stream", context=home))
    assert [sum(s.entry_id == "light.z" for s in a.slots) for a in answers] == list(range(1, 41))


# ---------------------------------------------------------------- several entities of one name

ROOMS = {
    "floors": [{"name": "Upstairs", "id": "up"}, {"name": "Downstairs", "id": "down"}],
    "areas": [
        {"name": "Bedroom", "id": "bedroom", "floor": "up"},
        {"name": "Kitchen", "id": "kitchen", "floor": "down"},
    ],
    "entities": [
        {"name": "Ceiling Light", "id": "light.bedroom_ceiling", "area": "bedroom"},
        {"name": "Ceiling Light", "id": "light.kitchen_ceiling", "area": "kitchen"},
    ],
}


BOTH_CEILINGS = ["light.bedroom_ceiling", "light.kitchen_ceiling"]


@pytest.mark.parametrize(
    ("text", "entities"),
    [
        ("turn on the ceiling light in the kitchen", ["light.kitchen_ceiling"]),
        ("turn on the kitchen ceiling light", ["light.kitchen_ceiling"]),
        ("turn on the ceiling light downstairs", ["light.kitchen_ceiling"]),
        ("turn on the ceiling light in the bedroom", ["light.bedroom_ceiling"]),
        ("turn on the ceiling light", BOTH_CEILINGS),  # none named: both, request order
    ],
)
def test_of_several_entities_of_one_name_the_one_in_the_area_named_answers(client, text, entities):
    """Homes name a light "Ceiling Light" in every room: the name slot names the entity in the
    area (or on the floor) the utterance names (it named the first in request order, the
    bedroom's light for "in the kitchen"); where none is named, `entry_ids` lists every one
    (`entry_id` held only the first)."""
    r = client.parse(text, context=ROOMS)
    names = [s for s in r.slots if s.name == "name"]
    assert [(s.entry_id, list(s.entry_ids)) for s in names] == [(entities[0], entities)]


def test_the_cli_prints_every_entry_a_shared_name_names(server, capsys, tmp_path):
    from client.__main__ import main

    home = tmp_path / "home.json"
    home.write_text(json.dumps(ROOMS))
    args = ["parse", "--target", server.target, "--context", str(home)]
    assert main([*args, "turn on the ceiling light"]) == 0
    assert "[light.bedroom_ceiling, light.kitchen_ceiling]" in capsys.readouterr().out
    assert main([*args, "--json", "turn on the ceiling light"]) == 0
    (name,) = [s for s in json.loads(capsys.readouterr().out)["slots"] if s["name"] == "name"]
    assert name["entry_ids"] == BOTH_CEILINGS
    assert main([*args, "--json", "turn on the ceiling light in the kitchen"]) == 0
    (name,) = [s for s in json.loads(capsys.readouterr().out)["slots"] if s["name"] == "name"]
    assert "entry_ids" not in name and name["entry_id"] == "light.kitchen_ceiling"


BATHROOMS = {
    "floors": [{"name": "Upstairs", "id": "up"}, {"name": "Downstairs", "id": "down"}],
    "areas": [
        {"name": "Bathroom", "id": "bath_up", "floor": "up"},
        {"name": "Bathroom", "id": "bath_down", "floor": "down"},
    ],
    "entities": [
        {"name": "Mirror Light", "id": "light.mirror_up", "area": "bath_up"},
        {"name": "Mirror Light", "id": "light.mirror_down", "area": "bath_down"},
    ],
}


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("turn on the lights in the bathroom downstairs", {"area": "bath_down"}),
        (
            "turn on the mirror light in the bathroom downstairs",
            {"name": "light.mirror_down", "area": "bath_down"},
        ),
        (
            "turn on the downstairs bathroom mirror light",
            {"name": "light.mirror_down", "area": "bath_down"},
        ),
        (
            "turn on the mirror light in the bathroom",
            {
                "name": ["light.mirror_up", "light.mirror_down"],
                "area": ["bath_up", "bath_down"],
            },
        ),
    ],
)
def test_of_several_areas_of_one_name_the_one_on_the_floor_named_answers(client, text, want):
    """A bathroom upstairs and one downstairs: "the bathroom downstairs" named the first in
    request order, upstairs, and so did the entity in it; "the bathroom" alone names both, and
    the mirror lights of both."""
    r = client.parse(text, context=BATHROOMS)
    got = {s.name: list(s.entry_ids) for s in r.slots if s.name in ("name", "area")}
    assert got == {k: v if isinstance(v, list) else [v] for k, v in want.items()}
    assert all(s.entry_id == s.entry_ids[0] for s in r.slots if s.entry_ids)


# ---------------------------------------------------------------- many homes at once


def test_concurrent_callers_with_different_homes_each_get_their_own(server):
    """Calls batched together (rows with and without a context, small and large contexts,
    prepared and not) each answer from their own home only."""
    fillers = [{"name": f"lamp {i}", "id": f"light.l{i}"} for i in range(40)]

    def home(i: int) -> dict:
        own = [{"name": "Zorblat Lamp", "id": f"light.z{i}"}]
        return {
            "entities": own + (fillers if i % 2 else []),
            "areas": [{"name": "Snug", "id": f"s{i}"}],
        }

    homes = [home(i) for i in range(8)]
    sent = [None if k % 5 == 4 else k % 8 for k in range(96)]
    with Client(server.target, connections=2) as c, ThreadPoolExecutor(16) as pool:

        def ask(k: int) -> list[str]:
            i = sent[k]
            ctx = None if i is None else prepare_context(homes[i]) if k % 3 else homes[i]
            r = c.parse("turn on the zorblat lamp in the snug", context=ctx)
            return sorted(s.entry_id for s in r.slots if s.entry_id)

        got = list(pool.map(ask, range(len(sent))))
    assert got == [[] if i is None else [f"light.z{i}", f"s{i}"] for i in sent]


def test_parse_many_with_a_dict_context_answers_as_one_call_each(client):
    """parse_many converts and serializes a dict context once for all its texts (it did so once
    per text: 200 texts with a 500-entity home spent most of their time there)."""
    home = {"entities": [{"name": f"lamp {i}", "id": f"light.l{i}"} for i in range(60)]}
    home["entities"].append({"name": "Zorblat Lamp", "id": "light.z"})
    texts = ["turn on the zorblat lamp", "turn off lamp 7", "what time is it"]
    many = client.parse_many(texts, context=home)
    assert many == [client.parse(t, context=home) for t in texts]
    assert [s.entry_id for s in many[0].slots] == ["light.z"]
    with pytest.raises(ContextError):
        client.parse_many(texts, context={"entities": [{"name": ["not", "text"]}]})


# ---------------------------------------------------------------- every limit, at it and past it


@pytest.mark.parametrize(("group", "limit"), [("floors", 100), ("areas", 500), ("entities", 5000)])
def test_every_group_takes_its_limit_and_refuses_one_more(client, group, limit):
    letters = "abcdefghijklmnopqrstuvwxyz"
    names = [f"zorb{a}{b}{c}" for a in letters for b in letters for c in letters][:limit]
    entries = [{"name": n, "id": f"x.{i}"} for i, n in enumerate(names)]
    r = client.parse(f"turn on the lights in {names[-1]}", context={group: entries})
    assert f"x.{limit - 1}" in [s.entry_id for s in r.slots]
    with pytest.raises(RnnServeError) as err:
        client.parse("turn on the lights", context={group: [*entries, {"name": "one more"}]})
    assert err.value.code == "INVALID_ARGUMENT"
    assert err.value.message == f"context has {limit + 1} {group}; the limit is {limit}"


@pytest.mark.parametrize("group", ["floors", "areas"])
def test_aliases_and_their_length_are_limited_in_every_group(client, group):
    ok = {"name": "Zorblat", "id": "z", "aliases": ["q" * 100] + [f"alias {i}" for i in range(19)]}
    client.parse("turn on the lights in zorblat", context={group: [ok]})
    for bad, needle in (
        ({**ok, "aliases": [*ok["aliases"], "one more"]}, f"{group}[0] has 21 aliases"),
        ({**ok, "aliases": ["q" * 101]}, f"{group}[0].aliases[0] has 101 characters"),
    ):
        with pytest.raises(RnnServeError) as err:
            client.parse("turn on the lights in zorblat", context={group: [bad]})
        assert err.value.code == "INVALID_ARGUMENT" and needle in err.value.message


def test_a_context_without_floors_areas_or_entities_is_refused(server, client, tmp_path):
    """A misspelt group ("entitys") left the home silently empty: every answer came without it."""
    path = tmp_path / "home.yaml"
    path.write_text("language: en\nentitys:\n  - name: Zorblat Lamp\n    id: light.zorblat\n")
    out = cli(
        "parse", "--target", server.target, "--context", str(path), "turn on the zorblat lamp"
    )
    assert out.returncode == 2 and out.stdout == ""
    assert "a context has floors, areas or entities; this one has entitys, language" in out.stderr
    path.write_text("language: en\nentities: []\n")  # a home with no entries is a home
    assert list(read_context(path).entities) == []
    with pytest.raises(ContextError, match=r"this one has entity$"):
        client.parse("turn on the zorblat lamp", context={"entity": [{"name": "Zorblat"}]})


def test_the_cli_tells_a_refused_context_once_and_as_the_files(server, tmp_path):
    """A home the server refuses was told once per utterance, each time "('text')", and a
    stream blamed its first stdin line."""
    path = tmp_path / "home.json"
    path.write_text('{"entities": [{"name": "Zorblat", "aliases": [""]}]}')
    want = f"INVALID_ARGUMENT: --context {path}: context.entities[0].aliases[0] is empty\n"
    out = cli("parse", "-", "--target", server.target, "--context", str(path), stdin="a\nb\nc\n")
    assert (out.returncode, out.stdout, out.stderr) == (1, "", want)
    out = cli(
        "stream",
        "--model",
        "intent-stream",
        "--target",
        server.target,
        "--context",
        str(path),
        stdin="turn on the\nzorblat\n",
    )
    assert (out.returncode, out.stderr) == (1, want)


@pytest.mark.parametrize(
    ("entity", "state", "domain"),
    [
        ({"id": "binary_sensor.front_door"}, "on", "binary_sensor"),
        ({"id": "x.front_door", "domain": "binary_sensor"}, "on", "binary_sensor"),
        ({"id": "cover.front_door"}, "open", "cover"),
    ],
)
def test_the_implied_domain_is_the_named_entitys(client, entity, state, domain):
    """The words of "is the front door open" imply a cover; a binary sensor named "Front Door"
    made the state `on` but the implied domain stayed `cover`, which matches no such entity."""
    r = client.parse(
        "is the front door open", context={"entities": [{"name": "Front Door", **entity}]}
    )
    assert [(s.name, s.canonical) for s in r.slots] == [("name", "Front Door"), ("state", state)]
    assert [(i.name, i.value) for i in r.implied_slots] == [("domain", domain)]
