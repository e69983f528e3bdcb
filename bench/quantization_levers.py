"""Can an int8 model give every clip the same answer in any batch *and* keep
batched int8 speed? The levers issue 28 names, built from one checkpoint and
measured side by side in one run.

    python bench/quantization_levers.py runs/student_fd/best.pt [--repeats 7]

Variants (all with the MFCC front-end in fp32, as the exporter keeps it):
  - fp32: the exporter's fp32 graph;
  - dynamic int8: the shipped quantization (DynamicQuantizeLSTM,
    DynamicQuantizeLinear: one activation scale per onnxruntime call), run as
    the runtime did before 2026-12-02 (one call a batch) and as it runs now
    (one call a clip);
  - per-row graph: the dynamic int8 graph inside a Scan over the batch rows, so
    one call a batch computes each row alone;
  - static QDQ: onnxruntime's quantize_static, activation scales calibrated on
    the checkpoint's validation clips (probe_set); onnxruntime has no static
    int8 LSTM, so the LSTMs stay fp32;
  - static QDQ, LSTM weights int8: the same, with the LSTM weights stored as
    int8 behind DequantizeLinear (a file the size of the int8 one).

For each: file size, ms a clip at batch 1, 8 and 64 (one thread, median of
repeats), the largest change of a probability between a clip scored alone and
in batches of 2, 8 and 64, and top-1 agreement with fp32 on the probe clips
(each clip alone). Ratios are against dynamic int8, batched (the speed the
issue asks to keep).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from batch_independence import clips  # noqa: E402
from common import machine  # noqa: E402

from speechlstm.modelmeta import INPUT_NAME, OUTPUT_NAMES  # noqa: E402
from speechlstm.runtime import open_session  # noqa: E402

BATCHES = (1, 8, 64)


def wrap_rows(proto):
    """The whole graph as the body of a Scan over the batch axis: each row runs
    as a batch of one (its own activation scales), in one session call."""
    import onnx
    from onnx import TensorProto, helper

    g = proto.graph
    inp, outs = g.input[0].name, [o.name for o in g.output]
    inner = {name: "rows/" + name for name in [inp, *outs]}
    axis = helper.make_tensor("rows/axis0", TensorProto.INT64, [1], [0])
    nodes = [helper.make_node("Unsqueeze", [inp + "_row", "rows/axis0"], [inner[inp]])]
    for node in g.node:
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.input[:] = [inner.get(v, v) for v in node.input]
        copy.output[:] = [inner.get(v, v) for v in node.output]
        nodes.append(copy)
    body_outs = []
    for name in outs:
        nodes.append(helper.make_node("Squeeze", [inner[name], "rows/axis0"], [name + "_row"]))
        body_outs.append(helper.make_tensor_value_info(name + "_row", TensorProto.FLOAT, None))
    row_in = helper.make_tensor_value_info(inp + "_row", TensorProto.FLOAT, ["samples"])
    body = helper.make_graph(nodes, "row", [row_in], body_outs, initializer=[axis])
    scan = helper.make_node("Scan", [inp], outs, body=body, num_scan_inputs=1)
    graph = helper.make_graph([scan], g.name, list(g.input), list(g.output), list(g.initializer))
    out = helper.make_model(
        graph, opset_imports=list(proto.opset_import), ir_version=proto.ir_version
    )
    out.metadata_props.extend(proto.metadata_props)
    return out


def lstm_weights_int8(proto):
    """LSTM W and R initializers stored as int8 (symmetric, one scale per gate
    row) behind DequantizeLinear: the file shrinks; onnxruntime computes fp32."""
    from onnx import helper, numpy_helper

    inits = {t.name: t for t in proto.graph.initializer}
    new_nodes = []
    for node in proto.graph.node:
        if node.op_type != "LSTM":
            continue
        for k in (1, 2):  # W, R: (directions, 4 * hidden, inputs)
            name = node.input[k]
            if name not in inits:
                continue
            w = numpy_helper.to_array(inits[name]).astype(np.float32)
            scale = np.maximum(np.abs(w).max(axis=(0, 2)), 1e-12) / 127.0  # (4 * hidden,)
            q = np.clip(np.round(w / scale[None, :, None]), -127, 127).astype(np.int8)
            proto.graph.initializer.remove(inits[name])
            proto.graph.initializer.extend(
                [
                    numpy_helper.from_array(q, name + "_q"),
                    numpy_helper.from_array(scale.astype(np.float32), name + "_scale"),
                    numpy_helper.from_array(np.zeros_like(scale, dtype=np.int8), name + "_zp"),
                ]
            )
            new_nodes.append(
                helper.make_node(
                    "DequantizeLinear", [name + "_q", name + "_scale", name + "_zp"], [name], axis=1
                )
            )
    kept = list(proto.graph.node)
    del proto.graph.node[:]
    proto.graph.node.extend(new_nodes + kept)
    return proto


def build(ckpt: Path, folder: Path) -> tuple[dict[str, Path], np.ndarray, str]:
    import onnx
    import onnxscript
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    from speechlstm.train import checkpoint
    from speechlstm.train.export import describe, export_fp32, probe_set, quantize_int8

    model, ck, cfg = checkpoint.load_model(ckpt)
    description = describe(ck, cfg)
    paths = {"fp32": folder / "fp32.onnx", "dynamic int8": folder / "dyn.onnx"}
    export_fp32(model, cfg, paths["fp32"], description)
    quantize_int8(paths["fp32"], paths["dynamic int8"], description)
    paths["per-row graph"] = folder / "rows.onnx"
    onnx.save(wrap_rows(onnx.load(str(paths["dynamic int8"]))), str(paths["per-row graph"]))

    probe, probe_name = probe_set(ck.source, cfg.features)
    cleaned = onnxscript.optimizer.optimize(
        onnx.load(str(paths["fp32"])), input_size_limit=1 << 24, output_size_limit=1 << 24
    )
    clean = folder / "clean.onnx"
    onnx.save(cleaned, str(clean))
    front = [n.name for n in cleaned.graph.node if n.name.startswith("front/")]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.rows = iter(probe[:200])

        def get_next(self):
            row = next(self.rows, None)
            return None if row is None else {INPUT_NAME: row[None]}

    paths["static QDQ"] = folder / "qdq.onnx"
    root = logging.getLogger()
    level, _ = root.level, root.setLevel(logging.ERROR)
    quantize_static(
        str(clean),
        str(paths["static QDQ"]),
        Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
        nodes_to_exclude=front,
    )
    root.setLevel(level)
    paths["static QDQ, LSTM weights int8"] = folder / "qdq_w8.onnx"
    onnx.save(
        lstm_weights_int8(onnx.load(str(paths["static QDQ"]))),
        str(paths["static QDQ, LSTM weights int8"]),
    )
    return paths, probe, probe_name


def run_batches(sess, x: np.ndarray, batch: int) -> np.ndarray:
    return np.concatenate(
        [
            sess.run([OUTPUT_NAMES[0]], {INPUT_NAME: x[s : s + batch]})[0]
            for s in range(0, len(x), batch)
        ]
    )


def median_ms_a_clip(fn, n: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) / n * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--clips", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    x = clips(args.clips)
    with tempfile.TemporaryDirectory() as tmp:
        paths, probe, probe_name = build(args.checkpoint, Path(tmp))
        reference = run_batches(open_session(paths["fp32"]), probe, 1).argmax(1)
        rows = []
        for name, path in paths.items():
            sess = open_session(path, threads=1)
            run_batches(sess, x[:8], 8)  # warm up
            alone = run_batches(sess, x, 1)
            drift = max(float(np.abs(run_batches(sess, x, b) - alone).max()) for b in (2, 8, 64))
            ms = {
                b: median_ms_a_clip(
                    lambda b=b, sess=sess: run_batches(sess, x, b), len(x), args.repeats
                )
                for b in BATCHES
            }
            agree = float((run_batches(sess, probe, 1).argmax(1) == reference).mean())
            rows.append((name, path.stat().st_size / 1e6, ms, drift, agree))
    base = next(r for r in rows if r[0] == "dynamic int8")[2]
    print(f"# {machine()}; {args.clips} noise clips at mixed levels, one thread,", end=" ")
    print(f"median of {args.repeats}")
    print(f"# checkpoint {args.checkpoint}; agreement on {len(probe)} {probe_name}")
    head = " | ".join(f"ms/clip @{b}" for b in BATCHES)
    print(f"| variant | MB | {head} | @8 vs dynamic int8 batched @8 |", end=" ")
    print("largest change alone vs batch | top-1 = fp32 |")
    print("|---|---|" + "---|" * len(BATCHES) + "---|---|---|")
    for name, mb, ms, drift, agree in rows:
        cells = " | ".join(f"{ms[b]:.3f}" for b in BATCHES)
        ratio = ms[8] / base[8]
        print(f"| {name} | {mb:.2f} | {cells} | {ratio:.2f} | {drift:.2g} | {agree:.1%} |")
    dyn = next(r for r in rows if r[0] == "dynamic int8")
    print(
        f"| dynamic int8, one call a clip (the runtime now) | {dyn[1]:.2f} | {dyn[2][1]:.3f} "
        f"| {dyn[2][1]:.3f} | {dyn[2][1]:.3f} | {dyn[2][1] / base[8]:.2f} | 0 | {dyn[4]:.1%} |"
    )


if __name__ == "__main__":
    main()
