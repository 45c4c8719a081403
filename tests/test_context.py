"""The caller's home as context: the matcher, the typed API's `context`, canonical values, the
v2 input, the CLI's --context, over real servers with the committed models."""

from __future__ import annotations

import json

import grpc
import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from client.api import Client, RnnServeError
from modelspec.context import (
    CONTEXT_DIM,
    MAX_ALIASES,
    MAX_ENTITIES,
    MAX_NAME_CHARS,
    ContextMatcher,
    Entry,
    HomeContext,
    Match,
    features,
    snap_tags,
)
from modelspec.names import CONTEXT, INPUT_IDS, INTENT_LOGITS, LENGTHS, SLOT_LOGITS
from modelspec.tokenizer import Tokenizer
from modelspec.values import SlotValues, chinese_number, english_number
from rnnserve.kserve import grpc_predict_v2_pb2 as v2
from rnnserve.kserve import grpc_predict_v2_pb2_grpc as v2_grpc
from rnnserve.v1 import rnnserve_pb2 as pb
from rnnserve.v1 import rnnserve_pb2_grpc as pb_grpc

from .conftest import DEFAULT_ONNX, ROOT
from .serving import RunningServer, ServerProcess, cli, settings_for, small_model_file

STREAM_ONNX = ROOT / "models" / "intent-stream.onnx"

# Names no training split holds: made-up words the vocabulary maps to <unk>.
HOME = {
    "floors": [{"name": "Mezzanine", "id": "mezz"}],
    "areas": [
        {"name": "Kitchen", "id": "kitchen_id", "floor": "mezz"},
        {"name": "Snug", "id": "snug_id", "aliases": ["cozy nook"]},
    ],
    "entities": [
        {"name": "Zorblat Lamp", "id": "light.zorblat", "area": "snug_id"},
        {"name": "Quillon Heater", "id": "switch.quillon", "aliases": ["brimwick"]},
        {"name": "Kitchen Light", "id": "light.kitchen"},
    ],
}
UNSEEN = [
    ("turn on the zorblat lamp", "zorblat lamp", "light.zorblat", "Zorblat Lamp"),
    ("switch off the quillon heater", "quillon heater", "switch.quillon", "Quillon Heater"),
    ("turn off brimwick", "brimwick", "switch.quillon", "Quillon Heater"),
]


def _tok() -> Tokenizer:
    return Tokenizer(["<pad>", "<unk>", "<num>"])


def _match(ctx: HomeContext, text: str):
    tok = _tok()
    return ContextMatcher(tok).match(ctx, [t.text for t in tok.tokenize(text)])


# ---------------------------------------------------------------- the matcher (pure)


def test_longest_match_wins_and_same_span_marks_every_kind():
    ctx = HomeContext(
        areas=(Entry("Kitchen"), Entry("Office")),
        entities=(Entry("Kitchen Light", "light.k"), Entry("office")),
    )
    m = _match(ctx, "Turn on the KITCHEN  light in the office")
    assert [(x.start, x.end, x.entries) for x in m] == [
        (3, 5, {"name": [0]}),  # "kitchen light" beats the area "kitchen" inside it
        (7, 8, {"name": [1], "area": [1]}),  # "office" is both: both marked
    ]
    f = features(m, 8)
    assert f.shape == (8, CONTEXT_DIM) and f[3, 0] == 1 and f[4, 1] == 1 and f[3, 2] == 0
    assert f[7].tolist() == [1, 0, 1, 0, 0, 0]


def test_matching_normalises_like_the_tokenizer_and_reads_aliases():
    ctx = HomeContext(entities=(Entry("Mila’s  Night-Light", aliases=("the glow",)), Entry("TV 2")))
    m = _match(ctx, "flip on mila's night light, then the glow and tv 2")
    assert [(x.start, x.end) for x in m] == [(2, 5), (6, 8), (9, 11)]
    assert all(x.entries == {"name": [k]} for x, k in zip(m, (0, 0, 1)))


def test_overlaps_resolve_the_same_way_whatever_the_entry_order():
    a, b = Entry("living room"), Entry("room lamp")
    for ents in ((a, b), (b, a)):
        m = _match(HomeContext(entities=ents), "the living room lamp")
        assert [(x.start, x.end) for x in m] == [(1, 3)]  # equal length: the earlier wins


@pytest.mark.parametrize(
    ("tags", "matches", "want"),
    [
        # part of a match tagged: the whole match, of the tagged kind
        ("O O B-name I-name", [(1, 4, {"name": [0]})], "O B-name I-name I-name"),
        # two runs inside one match: one slot
        ("O B-name B-name I-name", [(1, 4, {"name": [0]})], "O B-name I-name I-name"),
        # one run over two matches: each its own slot, of its own kind
        (
            "O B-name I-name I-name",
            [(1, 2, {"area": [0]}), (2, 4, {"name": [3]})],
            "O B-area B-name I-name",
        ),
        # tagged as a kind the match lacks: the match's first kind
        ("O B-name O", [(1, 2, {"area": [0], "floor": [1]})], "O B-area O"),
        # untagged: a slot of the match's first kind
        ("O O O", [(2, 3, {"name": [0]})], "O O B-name"),
        # a match touching another slot is left as tagged
        (
            "B-search_query I-search_query O",
            [(1, 3, {"name": [0]})],
            "B-search_query I-search_query O",
        ),
        # the tags already agree
        ("O B-area I-area", [(1, 3, {"area": [0]})], "O B-area I-area"),
        # a stream chunk's first tag continues a slot of the chunk before it
        ("I-name O O", [(2, 3, {"area": [0]})], "I-name O B-area"),
    ],
)
def test_tags_snap_to_the_matches_of_the_context(tags, matches, want):
    got = snap_tags(tags.split(), [Match(s, e, k) for s, e, k in matches])
    assert got == want.split()


def test_prepared_contexts_keep_the_most_recent_within_their_bounds():
    from server.context import PREPARE_MIN_ENTRIES, PreparedContexts, home_context

    def home(tag: str) -> pb.HomeContext:
        msg = pb.HomeContext()
        for i in range(PREPARE_MIN_ENTRIES):
            msg.entities.add(name=f"{tag} lamp {i}", id=f"light.{tag}{i}")
        return msg

    prepared = PreparedContexts(ContextMatcher(_tok()), max_contexts=2)
    a, b, c = (home_context(home(t)) for t in "abc")
    ta = prepared.tables(a)
    assert prepared.tables(home_context(home("a"))) is ta  # the same bytes: the same tables
    tb = prepared.tables(b)
    prepared.tables(a)  # a is now the most recent
    prepared.tables(c)  # b leaves
    assert prepared.tables(a) is ta
    assert prepared.tables(b) is not tb
    small = home_context(pb.HomeContext(areas=[pb.ContextEntry(name="den")]))
    assert prepared.tables(small) is not prepared.tables(small)  # small contexts are not kept
    by_bytes = PreparedContexts(ContextMatcher(_tok()), max_bytes=len(a.key) + len(b.key) - 1)
    tb = by_bytes.tables(b)
    by_bytes.tables(a)  # over the byte bound: b leaves
    assert by_bytes.tables(b) is not tb


def test_number_words_and_digits():
    assert english_number(["forty", "five"]) == 45
    assert english_number(["one", "hundred", "and", "twenty", "percent"]) == 120
    assert english_number(["21.5"]) == 21.5
    assert english_number(["two", "and", "a", "half"]) == 2.5
    assert english_number(["blue"]) is None


@pytest.mark.parametrize(
    ("said", "number"),
    [
        ("五十六", 56),
        ("十六", 16),
        ("十", 10),
        ("一百零五", 105),
        ("一百〇五", 105),
        ("两百", 200),
        ("两万", 20000),
        ("一千二百", 1200),
        ("二十一点五", 21.5),
        ("百分之三十", 30),
        ("七千k", 7000),
        ("二十五度", 25),
        ("零", 0),
    ],
)
def test_chinese_numerals_are_numbers(said, number):
    assert chinese_number(list(said)) == number  # one token per Han character


def test_digits_are_numbers_in_chinese_too_and_words_are_not():
    assert chinese_number(["26"]) == 26 and chinese_number(["21.5"]) == 21.5
    assert chinese_number(list("客厅")) is None and chinese_number(["blue"]) is None
    assert chinese_number(list("百分之")) is None and chinese_number([]) is None


def test_a_state_that_any_domain_says_otherwise_does_not_decide_the_domain():
    # "开了" is a cover's "open" and anything else's "on"; "锁上" is only ever "locked"
    values = SlotValues(
        text={
            "state": {
                "开 了": [["", "on"], ["", "open"], ["cover", "open"]],
                "锁 上": [["", "locked"], ["lock", "locked"]],
            }
        },
        implied={"HassGetState": {"": {"switch": 10, "cover": 5, "lock": 5}}},
    )
    assert values.implied_value("HassGetState", ["{state=开 了}"]) == "switch"  # the prior
    assert values.implied_value("HassGetState", ["{state=锁 上}"]) == "lock"
    assert values.canonical("state", ["开", "了"], "switch") == "on"
    assert values.canonical("state", ["开", "了"], "cover") == "open"
    assert values.implied_name("HassGetState") == "domain"  # unless the tables name another
    colors = SlotValues(
        text={"color": {"red": [["", "red"]]}}, intent_slots={"HassLightSet": ["color"]}
    )
    assert colors.untagged("HassLightSet", ["uplighter", "red"], ["B-name", "O"]) == [
        ("color", 1, 2, "red")
    ]
    assert not colors.untagged("HassTurnOn", ["uplighter", "red"], ["B-name", "O"])
    volume = SlotValues(implied_slot={"HassSetVolumeRelative": "volume_step"})
    assert SlotValues.from_dict(volume.to_dict()).implied_name("HassSetVolumeRelative") == (
        "volume_step"
    )


# ---------------------------------------------------------------- over the wire


@pytest.fixture(scope="module")
def server():
    with RunningServer(settings_for(DEFAULT_ONNX)) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    with Client(server.target) as c:
        yield c


@pytest.mark.parametrize(("text", "value", "entry_id", "entry_name"), UNSEEN)
def test_an_unseen_name_in_the_context_becomes_one_name_slot_with_its_id(
    client, text, value, entry_id, entry_name
):
    r = client.parse(text, context=HOME)
    assert not r.no_intent and r.intent.name in ("HassTurnOn", "HassTurnOff")
    names = [s for s in r.slots if s.name == "name"]
    assert [(s.value, s.entry_id, s.entry_name, s.canonical) for s in names] == [
        (value, entry_id, entry_name, entry_name)
    ]


def test_a_prepared_context_is_sent_as_its_bytes_and_answers_as_the_dict(client):
    from client import prepare_context

    fillers = [{"name": f"lamp {i}", "id": f"light.l{i}"} for i in range(60)]
    home = {**HOME, "entities": [*HOME["entities"], *fillers]}
    prepared = prepare_context(home)
    req = client.request(text="turn on the zorblat lamp", top_k=3, context=home)
    bare = client.request(text="turn on the zorblat lamp", top_k=3)
    number = pb.ParseRequest.DESCRIPTOR.fields_by_name["context"].number
    sent = bare.SerializeToString() + prepared.field(number)
    assert pb.ParseRequest.FromString(sent) == req  # what the client sends for it
    texts = [u[0] for u in UNSEEN]
    by_dict = [client.parse(t, context=home, top_k=3) for t in texts]
    assert [client.parse(t, context=prepared, top_k=3) for t in texts] == by_dict
    assert client.parse_many(texts, context=prepared, top_k=3) == by_dict
    assert [r.slots[-1].entry_id for r in by_dict] == [u[2] for u in UNSEEN]
    assert client.parse_tokens([1, 2], context=prepared).model == "intent"


def test_a_name_the_tagger_cuts_short_comes_back_whole_with_a_context(client):
    home = {"entities": [{"name": "Music Room Tall Robot Mower", "id": "vacuum.mower"}]}
    r = client.parse("stop music room tall robot mower", context=home)
    assert [(s.name, s.value, s.entry_id) for s in r.slots] == [
        ("name", "music room tall robot mower", "vacuum.mower")
    ]


def test_areas_and_floors_resolve_to_their_entries(client):
    r = client.parse("turn off the lights in the cozy nook", context=HOME)
    assert [(s.name, s.entry_id, s.canonical) for s in r.slots] == [("area", "snug_id", "Snug")]
    assert {i.name: i.value for i in r.implied_slots} == {"domain": "light"}


def test_no_context_gives_the_answer_of_an_empty_context(client):
    for text, *_ in UNSEEN + [("turn off the kitchen light", "", "", "")]:
        plain = client.parse(text, top_k=5)
        empty = client.parse(text, top_k=5, context={})
        assert plain == empty
        assert all(not s.entry_id for s in plain.slots)


def test_canonical_values_of_spoken_forms_and_numbers(client):
    r = client.parse("set the kitchen light brightness to forty percent", context=HOME)
    slots = {s.name: s for s in r.slots}
    assert r.intent.name == "HassLightSet"
    assert slots["brightness"].canonical == "40" and slots["name"].entry_id == "light.kitchen"
    # A percentage tagged as a cover's `position` under HassLightSet is its `brightness`.
    r = client.parse("set the kitchen light to forty percent", context=HOME)
    assert [(s.name, s.canonical) for s in r.slots if s.name != "name"] == [("brightness", "40")]
    r = client.parse("are the windows open in the kitchen")
    slots = {s.name: s for s in r.slots}
    assert slots["device_class"].canonical == "window"


@pytest.mark.parametrize(
    ("text", "state"),
    [("is our media room spotlights on", "on"), ("are the locks unlocked", "unlocked")],
)
def test_a_state_the_tagger_leaves_untagged_is_found_in_the_list(client, text, state):
    # The model tags no state in the first sentence; the state list finds "on" among the
    # untagged words (the intent has a `state` slot), with no character offsets lost.
    r = client.parse(text)
    assert r.intent.name == "HassGetState"
    states = [s for s in r.slots if s.name == "state"]
    assert [s.canonical for s in states] == [state]
    assert text[states[0].char_start : states[0].char_end] == states[0].value


def test_a_slot_found_in_the_lists_counts_towards_the_implied_domain(client):
    # The tagger leaves "windows" untagged; the list finds device_class `window`, and the
    # implied domain reads it like a tagged slot (none without it).
    r = client.parse("raise the windows around the penthouse")
    assert [(s.name, s.canonical) for s in r.slots if s.name == "device_class"] == [
        ("device_class", "window")
    ]
    assert {i.name: i.value for i in r.implied_slots} == {"domain": "cover"}


@pytest.mark.parametrize(
    ("text", "domain"),
    [
        ("how many of our nursery windows are locked", "lock"),
        ("which of the doors are shut on the upper floor", "cover"),
        ("are the garage doors closing", "cover"),
    ],
)
def test_a_state_of_one_domain_decides_the_implied_domain(client, text, domain):
    r = client.parse(text)
    assert r.intent.name == "HassGetState"
    assert {i.name: i.value for i in r.implied_slots} == {"domain": domain}


BAD_CONTEXTS = [
    ({"entities": [{"name": "x"}] * (MAX_ENTITIES + 1)}, f"the limit is {MAX_ENTITIES}"),
    (
        {"areas": [{"name": "a" * (MAX_NAME_CHARS + 1)}]},
        f"context.areas[0].name has {MAX_NAME_CHARS + 1} characters; the limit is",
    ),
    (
        {"entities": [{"name": "a", "aliases": ["b"] * (MAX_ALIASES + 1)}]},
        f"context.entities[0] has {MAX_ALIASES + 1} aliases",
    ),
    ({"entities": [{"name": "a"}, {"name": "b", "aliases": ["c", ""]}]}, "aliases[1] is empty"),
    ({"floors": [{"name": "up\nstairs"}]}, "context.floors[0].name holds a line break"),
]


@pytest.mark.parametrize(("home", "needle"), BAD_CONTEXTS)
def test_a_bad_context_is_invalid_argument(client, home, needle):
    with pytest.raises(RnnServeError) as err:
        client.parse("turn on the lamp", context=home)
    assert err.value.code == "INVALID_ARGUMENT" and needle in err.value.message


def test_a_context_at_the_limits_is_taken_and_nothing_is_kept(client):
    at_limit = {
        "entities": [{"name": f"lamp {i}", "id": f"light.l{i}"} for i in range(MAX_ENTITIES - 1)]
        + [{"name": "Zorblat Lamp", "id": "light.zorblat", "aliases": ["z"] * MAX_ALIASES}]
    }
    r = client.parse("turn on the zorblat lamp", context=at_limit)
    assert [s.entry_id for s in r.slots] == ["light.zorblat"]
    assert not any(s.entry_id for s in client.parse("turn on the zorblat lamp").slots)


def test_a_large_context_sent_again_answers_as_the_first_time_and_no_other(client):
    """A large context's tables are kept by its exact bytes: the same context answers the same;
    one changed id, alias or entry order is another context; a bad one is refused every time."""
    fillers = [{"name": f"lamp {i}", "id": f"light.l{i}"} for i in range(60)]
    home = {"entities": [*fillers, {"name": "Zorblat Lamp", "id": "light.zorblat"}]}
    first = client.parse("turn on the zorblat lamp", context=home)
    assert [s.entry_id for s in first.slots] == ["light.zorblat"]
    assert client.parse("turn on the zorblat lamp", context=home) == first
    moved = {"entities": [*fillers, {"name": "Zorblat Lamp", "id": "light.moved"}]}
    assert [s.entry_id for s in client.parse("turn on the zorblat lamp", context=moved).slots] == [
        "light.moved"
    ]
    aliased = {
        "entities": [*fillers, {"name": "Quillon", "id": "light.q", "aliases": ["zorblat lamp"]}]
    }
    assert [
        s.entry_id for s in client.parse("turn on the zorblat lamp", context=aliased).slots
    ] == ["light.q"]
    assert client.parse("turn on the zorblat lamp", context=home) == first
    bad = {"entities": [*fillers, {"name": "a", "aliases": ["b", ""]}]}
    for _ in range(2):
        with pytest.raises(RnnServeError) as err:
            client.parse("turn on the lamp", context=bad)
        assert err.value.code == "INVALID_ARGUMENT" and "entities[60].aliases[1] is empty" in (
            err.value.message
        )


def test_a_stream_takes_the_context_of_its_first_message():
    fillers = [{"name": f"lamp {i}", "id": f"light.l{i}"} for i in range(60)]
    large = {**HOME, "entities": [*HOME["entities"], *fillers]}  # read apart from the message
    with RunningServer(settings_for(STREAM_ONNX)) as srv, Client(srv.target) as c:
        for home in (HOME, large, large):
            answers = list(c.stream(["turn on the ", "zorblat lamp"], context=home))
            last = answers[-1]
            assert [(s.value, s.entry_id) for s in last.slots if s.name == "name"] == [
                ("zorblat lamp", "light.zorblat")
            ]


def test_a_model_without_the_input_answers_as_before_and_resolves_names(tmp_path):
    path = small_model_file(tmp_path / "small.onnx", "gru")
    with RunningServer(settings_for(path)) as srv, Client(srv.target) as c:
        home = {"areas": [{"name": "kitchen", "id": "k"}]}
        a, b = (
            c.parse("turn on the kitchen lights"),
            c.parse("turn on the kitchen lights", context=home),
        )
        assert a.top_intents == b.top_intents and [s.value for s in a.slots] == [
            s.value for s in b.slots
        ]
        assert all(s.entry_id in ("", "k") for s in b.slots)


# ---------------------------------------------------------------- v2 raw tensors


def _infer(stub, ids, context=None):
    req = v2.ModelInferRequest(model_name="intent")
    req.inputs.add(name=INPUT_IDS, datatype="INT64", shape=list(ids.shape))
    req.raw_input_contents.append(ids.tobytes())
    if context is not None:
        req.inputs.add(name=CONTEXT, datatype="FP32", shape=list(context.shape))
        req.raw_input_contents.append(context.astype(np.float32).tobytes())
    resp = stub.ModelInfer(req, timeout=10)
    return {
        o.name: np.frombuffer(raw, np.float32).reshape(list(o.shape))
        for o, raw in zip(resp.outputs, resp.raw_output_contents)
    }


def test_v2_requests_without_the_context_are_answered_as_the_graph_without_it(server):
    ids = np.array([[24, 5, 7, 30, 2], [11, 9, 3, 4, 8]], dtype=np.int64)
    sess = ort.InferenceSession(str(DEFAULT_ONNX), providers=["CPUExecutionProvider"])
    want = sess.run(
        [SLOT_LOGITS, INTENT_LOGITS], {INPUT_IDS: ids, LENGTHS: np.array([5, 5], np.int64)}
    )
    with grpc.insecure_channel(server.target) as ch:
        stub = v2_grpc.GRPCInferenceServiceStub(ch)
        old = _infer(stub, ids)
        zeros = _infer(stub, ids, np.zeros((2, 5, CONTEXT_DIM)))
        ones = _infer(stub, ids, np.ones((2, 5, CONTEXT_DIM)))
        for name, w in zip((SLOT_LOGITS, INTENT_LOGITS), want):
            assert np.array_equal(old[name], w) and np.array_equal(zeros[name], w)
        assert not np.allclose(ones[INTENT_LOGITS], want[1])
        md = stub.ModelMetadata(v2.ModelMetadataRequest(name="intent"), timeout=5)
        assert [list(t.shape) for t in md.inputs if t.name == CONTEXT] == [[-1, -1, CONTEXT_DIM]]
        cfg = stub.ModelConfig(v2.ModelConfigRequest(name="intent"), timeout=5).config
        assert [t.optional for t in cfg.input if t.name == CONTEXT] == [True]
        for bad, needle in (
            (np.ones((2, 4, CONTEXT_DIM)), "must have shape"),
            (np.full((2, 5, CONTEXT_DIM), 2.0), "outside [0, 1]"),
        ):
            with pytest.raises(grpc.RpcError) as err:
                _infer(stub, ids, bad)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert needle in err.value.details()


# ---------------------------------------------------------------- the command line

FIXTURES = """language: "en"
floors:
  - name: "Upstairs"
    id: "upstairs_id"
areas:
  - name: "Living Room"
    id: "living_room_id"
    floor: "upstairs_id"
entities:
  - name: "Zorblat Lamp"
    id: "light.zorblat"
    area: "living_room_id"
    state: "on"
    attributes:
      device_class: light
"""


def test_the_cli_reads_a_fixtures_shaped_file(tmp_path):
    path = tmp_path / "_fixtures.yaml"
    path.write_text(FIXTURES)
    srv = ServerProcess("--model", str(DEFAULT_ONNX))
    try:
        out = cli(
            "parse",
            "--target",
            srv.target,
            "--json",
            "--context",
            str(path),
            "turn on the zorblat lamp",
        )
        assert out.returncode == 0, out.stderr
        slots = json.loads(out.stdout)["slots"]
        assert [(s["value"], s.get("entry_id")) for s in slots] == [
            ("zorblat lamp", "light.zorblat")
        ]
        bad = tmp_path / "bad.json"
        bad.write_text('{"entities": [{"id": "light.x"}]}')
        out = cli("parse", "--target", srv.target, "--context", str(bad), "turn on the lamp")
        assert out.returncode == 2 and "entities[0] needs a name" in out.stderr
    finally:
        srv.stop()


# ---------------------------------------------------------------- fuzzing (make test-slow)

names = st.text(max_size=40) | st.sampled_from(["Kitchen", "Living Room", "TV 2", "Mila's lamp"])
entries = st.lists(
    st.builds(
        lambda n, i, a, d: pb.ContextEntry(name=n, id=i, aliases=a, domain=d),
        names,
        st.text(max_size=20),
        st.lists(names, max_size=3),
        st.text(max_size=10),
    ),
    max_size=12,
)


@pytest.mark.slow
@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(
    text=st.text(max_size=80) | st.sampled_from(["turn on the kitchen light", "tv 2 off"]),
    floors=entries,
    areas=entries,
    ents=entries,
)
def test_fuzz_contexts_get_an_answer_or_invalid_argument(server, text, floors, areas, ents):
    ctx = pb.HomeContext(floors=floors, areas=areas, entities=ents)
    with grpc.insecure_channel(server.target) as ch:
        stub = pb_grpc.ParserStub(ch)
        try:
            r = stub.Parse(pb.ParseRequest(text=text, context=ctx), timeout=10)
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (err.code(), err.details())
            return
    kinds = {"name": ents, "area": areas, "floor": floors}
    for s in r.slots:  # a resolved slot names an entry of its own kind, by that entry's name
        if s.entry_name:
            assert s.entry_name in {e.name for e in kinds[s.name]}


def _wire_request(n: int, **fields) -> pb.ParseRequest:
    ctx = pb.HomeContext()
    for i in range(n):
        ctx.entities.add(name=f"lamp {i}", id=f"light.l{i}", aliases=[f"glow {i}"])
    return pb.ParseRequest(context=ctx, **fields)


def test_a_large_context_is_read_apart_and_the_rest_parses_as_protobuf_parses_it():
    from server.context_wire import split_field
    from server.typed_servicer import deserializers

    read = deserializers()["/rnnserve.v1.Parser/Parse"]
    req = _wire_request(80, text="turn on lamp 3", top_k=4, return_steps=True)
    wire = req.SerializeToString()
    got = read(wire)
    assert pb.HomeContext.FromString(got.context) == req.context
    rest = pb.ParseRequest()
    rest.CopyFrom(req)
    rest.ClearField("context")
    assert got.message == rest
    # a context sent twice is merged by protobuf: such a message is parsed whole
    twice = wire + _wire_request(3).SerializeToString()
    number = pb.ParseRequest.DESCRIPTOR.fields_by_name["context"].number
    assert split_field(twice, number) is None
    whole = read(twice)
    assert whole.context == b"" and whole.message == pb.ParseRequest.FromString(twice)
    # a small context stays in the message; a cut message is left to protobuf
    small = _wire_request(2, text="x").SerializeToString()
    assert read(small) == (pb.ParseRequest.FromString(small), b"")
    assert split_field(wire[:-3], number) is None


def test_context_bytes_that_are_not_a_home_context_are_invalid_argument(server):
    # the context field holding bytes that do not parse as a HomeContext
    good = _wire_request(80, text="turn on lamp 3").SerializeToString()
    rest = pb.ParseRequest(text="turn on lamp 3").SerializeToString()
    junk = b"\x0a\xff\xff\xff\xff\x0f" + b"\x00" * 2000  # a length running past the end
    number = pb.ParseRequest.DESCRIPTOR.fields_by_name["context"].number
    bad = rest + bytes([number << 3 | 2, 0xD6, 0x0F]) + junk  # the context, 2,006 bytes
    with grpc.insecure_channel(server.target) as ch:
        call = ch.unary_unary("/rnnserve.v1.Parser/Parse")
        ok = pb.ParseResponse.FromString(call(good, timeout=10))
        assert ok.intent.name == "HassTurnOn"
        with pytest.raises(grpc.RpcError) as err:
            call(bad, timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "context is not a valid HomeContext message" in err.value.details()
        assert pb.ParseResponse.FromString(call(good, timeout=10)) == ok


WORDS = ["kitchen", "lamp", "tv", "2", "mila's", "the", "night-light", "on", "LAMP", "’s", "a0"]


@settings(max_examples=300, deadline=None, database=None)
@given(
    texts=st.lists(
        st.lists(st.sampled_from(WORDS), min_size=1, max_size=4).map(" ".join)
        | st.text(alphabet="ab 2'’-\n", max_size=8),
        max_size=12,
    ),
    utterance=st.lists(st.sampled_from(WORDS + ["x"]), max_size=10).map(" ".join),
)
def test_matches_equal_every_span_compared_with_every_names_key(texts, utterance):
    """The matcher's shortcuts (lower-cased names as their own keys, odd names found in bulk,
    spans only from tokens that start a name) find what comparing every span with every name's
    tokenized key finds."""
    from modelspec.context import _resolve

    tok = _tok()
    matcher = ContextMatcher(tok)
    entries = tuple(Entry(t, f"e.{k}") for k, t in enumerate(texts) if t.strip())
    tokens = [t.text for t in tok.tokenize(utterance)]
    tables = matcher.tables(HomeContext(entities=entries))
    if any(len(t.lows) != len(t.texts) for t in tables):
        return  # a name holding a line break: refused before matching
    found = []
    for k, e in enumerate(entries):
        key = matcher.key(e.name)
        for i in range(len(tokens)):
            for j in range(i + 1, min(len(tokens), i + 8) + 1):
                if " ".join(tokens[i:j]) == key:
                    found.append((i, j, "name", k))
    assert matcher.match_tables(tables, tokens) == _resolve(found)
