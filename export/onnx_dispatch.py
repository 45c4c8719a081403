"""The graph of a model with a fallback network: run only the network(s) a batch needs.

The traced pair (export/model.py, `fallback`) runs both networks over every row and picks each
row's answer. This graph wraps three traces of the same model in `If` nodes: the fallback
network alone when no row has a context feature within its length, the context network alone
when every row has one, the pair only when a batch mixes them. A row's answer is the same
whichever branch computes it (parity checks it), and a request without a context costs one
network, not two. Each branch keeps its own copy of its weights (four networks' worth).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnx.compose import add_prefix_graph

from modelspec.names import CONTEXT, INPUT_IDS, LENGTHS

# Names of the values the outer graph computes to choose a branch.
_ANY, _ALL = "dispatch/any_context", "dispatch/all_context"


def _branch(proto: onnx.ModelProto, prefix: str) -> onnx.GraphProto:
    """`proto`'s graph as an If branch: no inputs (it reads the outer graph's), its names
    prefixed. Its weights stay in the branch: onnxruntime optimises a subgraph's own
    initializers as it does a graph's (outer-scope weights measured 2e-6 off the same
    network traced alone, and slower)."""
    inputs = {i.name for i in proto.graph.input}
    g = onnx.GraphProto()
    g.CopyFrom(proto.graph)
    kept = [t for t in g.initializer if t.name not in inputs]  # not the inputs' defaults
    del g.initializer[:]
    g.initializer.extend(kept)
    g = add_prefix_graph(g, prefix, rename_inputs=False)
    del g.input[:]
    g.name = prefix.rstrip("/")
    return g


def _const(name: str, value: int | list[int]) -> onnx.NodeProto:
    """An int64 constant: a scalar, or a 1-D tensor from a list."""
    return helper.make_node(
        "Constant", [], [name], value=numpy_helper.from_array(np.asarray(value, dtype=np.int64))
    )


def _choice_nodes() -> list[onnx.NodeProto]:
    """any / all rows with a nonzero context feature within their length (bool scalars)."""
    n = helper.make_node
    p = "dispatch/"
    return [
        _const(p + "zero", 0),
        _const(p + "one", 1),
        _const(p + "axis1", [1]),
        _const(p + "axis0", [0]),
        n("Shape", [INPUT_IDS], [p + "shape"]),
        n("Gather", [p + "shape", p + "one"], [p + "time"], axis=0),
        n("Range", [p + "zero", p + "time", p + "one"], [p + "steps"]),
        n("Unsqueeze", [p + "steps", p + "axis0"], [p + "steps_row"]),  # [1, T]
        n("Unsqueeze", [LENGTHS, p + "axis1"], [p + "lengths_col"]),  # [B, 1]
        n("Less", [p + "steps_row", p + "lengths_col"], [p + "inside"]),  # [B, T]
        n("Abs", [CONTEXT], [p + "abs"]),
        n("ReduceMax", [p + "abs"], [p + "step_max"], axes=[2], keepdims=0),  # [B', T']
        n("Cast", [p + "step_max"], [p + "step_on"], to=onnx.TensorProto.BOOL),
        n("And", [p + "inside", p + "step_on"], [p + "on"]),  # [B, T]
        n("Cast", [p + "on"], [p + "on_f"], to=onnx.TensorProto.FLOAT),
        n("ReduceMax", [p + "on_f"], [p + "row"], axes=[1], keepdims=0),  # [B]
        n("ReduceMax", [p + "row"], [p + "any_f"], keepdims=0),
        n("ReduceMin", [p + "row"], [p + "all_f"], keepdims=0),
        n("Cast", [p + "any_f"], [_ANY], to=onnx.TensorProto.BOOL),
        n("Cast", [p + "all_f"], [_ALL], to=onnx.TensorProto.BOOL),
    ]


def _outputs(graph: onnx.GraphProto, prefix: str) -> list[onnx.ValueInfoProto]:
    out = []
    for o in graph.output:
        v = onnx.ValueInfoProto()
        v.CopyFrom(o)
        v.name = prefix + o.name
        out.append(v)
    return out


def dispatch(
    pair: onnx.ModelProto, plain: onnx.ModelProto, context: onnx.ModelProto
) -> onnx.ModelProto:
    """One graph with `pair`'s inputs and outputs that runs `plain`, `context` or `pair` as
    the batch's context features require (see the module docstring)."""
    model = onnx.ModelProto()
    model.CopyFrom(pair)
    g = model.graph
    inputs = {i.name for i in g.input}
    defaults = [t for t in g.initializer if t.name in inputs]
    del g.node[:]
    del g.initializer[:]
    g.initializer.extend(defaults)
    del g.value_info[:]
    names = [o.name for o in g.output]
    plain_g, own_g, pair_g = (
        _branch(p, n) for p, n in ((plain, "plain/"), (context, "context/"), (pair, "pair/"))
    )
    inner = helper.make_graph(
        [
            helper.make_node(
                "If",
                [_ALL],
                [f"with_context/{n}" for n in names],
                then_branch=own_g,
                else_branch=pair_g,
            )
        ],
        "with_context",
        [],
        _outputs(g, "with_context/"),
    )
    g.node.extend(_choice_nodes())
    g.node.append(helper.make_node("If", [_ANY], names, then_branch=inner, else_branch=plain_g))
    return model
