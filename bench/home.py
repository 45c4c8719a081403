"""A synthetic home for `make bench`: N entities (some with aliases) over 30 areas and 3 floors,
in the typed API's HomeContext shape, and the in-process cost of matching it."""

from __future__ import annotations

import random
import time
from typing import Any

import numpy as np

from rnnserve.v1 import rnnserve_pb2 as pb

ROOMS = "kitchen living room bedroom office garage hall bathroom porch attic den nursery study"
NOUNS = "lamp light fan heater speaker blinds plug switch sensor strip tv lock door window valve"
PEOPLE = "emma noah olivia liam ava mila lucas sophia"
QUALIFIERS = "left right ceiling desk corner"


def home(n: int = 500, seed: int = 0) -> pb.HomeContext:
    """n distinct entities named as homes name them ("emma's bedroom lamp", "kitchen left
    blinds", one in 20 with a number: "office tv 2"), one in 5 with an alias; 30 areas; 3 floors."""
    rng = random.Random(seed)
    rooms, nouns, people = ROOMS.split(), NOUNS.split(), PEOPLE.split()
    qualifiers = ["", *(f"{p}'s" for p in people), *QUALIFIERS.split()]
    names = [" ".join(w for w in (q, r, x) if w) for q in qualifiers for r in rooms for x in nouns]
    rng.shuffle(names)
    msg = pb.HomeContext()
    for f in ("ground floor", "upstairs", "basement"):
        msg.floors.add(name=f.title(), id=f.replace(" ", "_"))
    for k in range(30):
        room = rooms[k % len(rooms)] + ("" if k < len(rooms) else f" {k}")
        msg.areas.add(name=room.title(), id=f"area_{k}", floor="upstairs")
    for k, name in enumerate(names[:n]):
        e = msg.entities.add(name=name.title() + (" 2" if k % 20 == 0 else ""), id=f"light.e{k}")
        e.area = f"area_{k % 30}"
        if k % 5 == 0:
            e.aliases.append(f"{rng.choice(people)} {rng.choice(nouns)}")
    return msg


def match_cost_us(
    model_path: str, texts: list[str], n: int = 500, rounds: int = 3
) -> dict[str, Any]:
    """Median µs per request of the server's context work (read the request off the wire with
    the typed API's deserializer, read and check its context, match it, build the input) with
    an n-entity context: sent again (read and prepared by an earlier request, `p50_us`) and
    first sent (`first_p50_us`)."""
    import onnxruntime as ort

    from modelspec.context import ContextMatcher
    from modelspec.meta import ModelMetadata
    from modelspec.names import METADATA_KEY
    from server.context import ContextMatch, PreparedContexts, context_input
    from server.context_wire import WireContexts, deserializer
    from server.decoding import TokenOut

    sess = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    meta = ModelMetadata.from_json(sess.get_modelmeta().custom_metadata_map[METADATA_KEY])
    tok = meta.make_tokenizer()
    matcher = ContextMatcher(tok)
    read = deserializer(pb.ParseRequest)
    wire = pb.ParseRequest(text="x", context=home(n)).SerializeToString()

    class _Model:  # what context_input reads of a served model
        takes_context = True

    toks = [[TokenOut(t.text, 0, t.start, t.end) for t in tok.tokenize(x)] for x in texts]
    times: dict[str, list[float]] = {"again": [], "first": []}
    kept = (WireContexts(), PreparedContexts(matcher))
    for _ in range(rounds):
        for t in toks:
            for which in times:
                seen = kept if which == "again" else (WireContexts(), PreparedContexts(matcher))
                arrived = bytes(bytearray(wire))  # a new bytes object, as off the wire
                t0 = time.perf_counter()
                req = read(arrived)
                ctx = seen[0].get(req.context)
                assert ctx is not None
                hm = ContextMatch(ctx, seen[1])
                context_input(_Model(), hm, t, len(t))  # type: ignore[arg-type]
                times[which].append((time.perf_counter() - t0) * 1e6)
    again, first = times["again"], times["first"]
    return {
        "entities": n,
        "p50_us": float(np.median(again)),
        "p90_us": float(np.percentile(again, 90)),
        "first_p50_us": float(np.median(first)),
    }
