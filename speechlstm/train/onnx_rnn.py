"""The recurrent stack as an ONNX graph, written from the trained weights.

torch.export cannot trace a Python loop over a dynamic number of time steps,
so the recurrent part of the exported model is built here with onnx.helper,
one operator per layer:

    lstm      LSTM (both directions in one node)
    peephole  LSTM with its peephole input P
    gru       GRU, linear_before_reset=1 (PyTorch's form of the reset gate)
    rnn       RNN (tanh)
    coupled   Scan over time steps: no ONNX operator ties f to i, so the
              cell's step is a small subgraph; the input projection is one
              MatMul over all steps outside the loop, as in cells.py

Input `frames` (B, T, F), output `hidden` (B, T, directions * H), any B and T.
The export checks the result against PyTorch (export.check_parity).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# PyTorch's gate order -> the ONNX operator's.
_GATE_ORDER = {
    "lstm": [0, 3, 1, 2],  # i, f, g, o -> i, o, f, c
    "peephole": [0, 3, 1, 2],
    "gru": [1, 0, 2],  # r, z, n -> z, r, h
    "rnn": [0],
}
_OPERATOR = {"lstm": "LSTM", "peephole": "LSTM", "gru": "GRU", "rnn": "RNN"}


class _Graph:
    """Collects nodes and initializers, handing out unique value names."""

    def __init__(self, prefix: str = ""):
        self.prefix = prefix
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{self.prefix}{hint}_{self._count}"

    def const(self, hint: str, array: np.ndarray) -> str:
        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str | None = None, n_out: int = 1, **attrs):
        outputs = [self.name(hint or op_type.lower()) for _ in range(n_out)]
        self.nodes.append(
            helper.make_node(op_type, inputs, outputs, name=self.name(op_type), **attrs)
        )
        return outputs[0] if n_out == 1 else outputs


def _numpy(weights: dict) -> dict[str, np.ndarray]:
    return {k: v.detach().float().cpu().numpy() for k, v in weights.items()}


def _reorder(array: np.ndarray, order: list[int]) -> np.ndarray:
    """Permute the stacked gate blocks along axis 0."""
    blocks = array.reshape(len(order), -1, *array.shape[1:])
    return blocks[order].reshape(array.shape)


def _operator_layer(g: _Graph, x: str, cell: str, dirs: list[dict], hidden: int) -> str:
    """One layer as a single LSTM/GRU/RNN node: (T, B, F) -> (T, B, D*H)."""
    order = _GATE_ORDER[cell]
    w = np.stack([_reorder(d["weight_ih"], order) for d in dirs])  # (D, G*H, F)
    r = np.stack([_reorder(d["weight_hh"], order) for d in dirs])  # (D, G*H, H)
    b = np.stack(
        [
            np.concatenate([_reorder(d["bias_ih"], order), _reorder(d["bias_hh"], order)])
            for d in dirs
        ]
    )  # (D, 2*G*H): the operator's Wb then Rb
    inputs = [x, g.const("W", w), g.const("R", r), g.const("B", b)]
    attrs = {
        "hidden_size": hidden,
        "direction": "bidirectional" if len(dirs) == 2 else "forward",
    }
    if cell == "peephole":
        # ours: V_i, V_f, V_o; the operator's P: i, o, f
        p = np.stack([np.concatenate([d["peep"][0], d["peep"][2], d["peep"][1]]) for d in dirs])
        inputs += ["", "", "", g.const("P", p)]  # sequence_lens, initial_h, initial_c unused
    if cell == "gru":
        attrs["linear_before_reset"] = 1
    y = g.op(_OPERATOR[cell], inputs, hint="y", **attrs)  # (T, D, B, H)
    y = g.op("Transpose", [y], perm=[0, 2, 1, 3])  # (T, B, D, H)
    return g.op("Reshape", [y, g.const("shape", np.array([0, 0, -1], dtype=np.int64))])


def _coupled_direction(g: _Graph, x: str, d: dict, hidden: int, reverse: bool, zeros: str) -> str:
    """One direction of a coupled-gate layer: MatMul over all steps, then Scan: (T, B, H)."""
    xp = g.op("MatMul", [x, g.const("Wt", d["weight_ih"].T)])
    xp = g.op("Add", [xp, g.const("b_ih", d["bias_ih"])])  # (T, B, 3H)
    body = _Graph(prefix=g.name("step") + "/")
    h_prev, c_prev, xp_t = body.name("h_prev"), body.name("c_prev"), body.name("xp_t")
    hp = body.op("MatMul", [h_prev, body.const("Ut", d["weight_hh"].T)])
    gates = body.op("Add", [body.op("Add", [xp_t, hp]), body.const("b_hh", d["bias_hh"])])
    i, cand, o = body.op("Split", [gates], n_out=3, axis=-1, num_outputs=3)
    i = body.op("Sigmoid", [i])
    # C_t = (1 - i) ⊙ C_{t-1} + i ⊙ g  ==  C_{t-1} + i ⊙ (g - C_{t-1}), as cells.CoupledLSTM
    c = body.op(
        "Add", [c_prev, body.op("Mul", [i, body.op("Sub", [body.op("Tanh", [cand]), c_prev])])]
    )
    h = body.op("Mul", [body.op("Sigmoid", [o]), body.op("Tanh", [c])])
    y_t = body.op("Identity", [h])

    def value(name):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, None)

    graph = helper.make_graph(
        body.nodes,
        body.prefix.rstrip("/"),
        [value(h_prev), value(c_prev), value(xp_t)],
        [value(h), value(c), value(y_t)],
        initializer=body.initializers,
    )
    directions = [1 if reverse else 0]
    _, _, y = g.op(
        "Scan",
        [zeros, zeros, xp],
        n_out=3,
        body=graph,
        num_scan_inputs=1,
        scan_input_directions=directions,
        scan_output_directions=directions,  # outputs stay in time order
    )
    return y


def _coupled_layer(g: _Graph, x: str, dirs: list[dict], hidden: int) -> str:
    batch = g.op(
        "Slice", [g.op("Shape", [x]), g.const("one", np.array([1])), g.const("two", np.array([2]))]
    )
    shape = g.op("Concat", [batch, g.const("hidden", np.array([hidden]))], axis=0)
    zeros = g.op("ConstantOfShape", [shape], value=numpy_helper.from_array(np.zeros(1, np.float32)))
    outs = [_coupled_direction(g, x, d, hidden, bool(k), zeros) for k, d in enumerate(dirs)]
    return g.op("Concat", outs, axis=-1) if len(outs) > 1 else outs[0]


def recurrent_model(
    rnn,
    cell: str,
    n_inputs: int,
    opset: int,
    ir_version: int,
    input_name: str = "frames",
    output_name: str = "hidden",
) -> onnx.ModelProto:
    """ONNX model of a cells.BiLSTM or cells.EquationStack (weights copied in)."""
    g = _Graph()
    x = g.op("Transpose", [input_name], perm=[1, 0, 2])  # the operators want (T, B, F)
    for layer in range(rnn.num_layers):
        dirs = [_numpy(rnn.direction_weights(layer, d)) for d in range(rnn.directions)]
        if cell == "coupled":
            x = _coupled_layer(g, x, dirs, rnn.hidden_size)
        else:
            x = _operator_layer(g, x, cell, dirs, rnn.hidden_size)
    g.nodes.append(helper.make_node("Transpose", [x], [output_name], perm=[1, 0, 2]))
    width = rnn.directions * rnn.hidden_size
    graph = helper.make_graph(
        g.nodes,
        f"recurrent_{cell}",
        [
            helper.make_tensor_value_info(
                input_name, TensorProto.FLOAT, ["batch", "steps", n_inputs]
            )
        ],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["batch", "steps", width])],
        initializer=g.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir_version
    onnx.checker.check_model(model)
    return model
