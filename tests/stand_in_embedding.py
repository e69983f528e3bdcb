"""A stand-in for Google's speech embedding (openwakeword's two ONNX files), built
with onnx.helper, so tests need neither the real files nor a download.

Same interface as the real pair (speechlstm/train/embedding.py):

    melspectrogram.onnx  input  `input`   float32 (1, S) int16-range samples
                         output           (1, 1, F, 32), F = S // 160 - 3 (any S)
                         here: 160-sample frames -> |cosine bank at 32 pitches| -> log1p
    embedding_model.onnx input  `input_1` float32 (W, 76, 32, 1) mel windows
                         output           (W, 1, 1, 96)
                         here: a fixed random projection of the band means of the
                         window's two halves, so rising and falling tones differ
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# The real files' opset and IR version: the embedding-front-end export joins
# them to its own opset-13 graph as they are.
OPSET = 13
IR_VERSION = 7


def build_stand_in(folder: Path, seed: int = 0) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(160) / 16_000
    freqs = np.geomspace(100, 4000, 32)
    bank = np.cos(2 * np.pi * freqs[None, :] * t[:, None]).astype(np.float32)  # (160, 32)
    mel_graph = helper.make_graph(
        [
            # F = S // 160 - 3 frames of 160 samples (the real model's count for
            # whole frames), so it runs on a clip and on a stream's hop alike.
            helper.make_node("Shape", ["input"], ["shape"]),
            helper.make_node("Gather", ["shape", "axis1"], ["n"]),
            helper.make_node("Div", ["n", "hop"], ["n_hops"]),
            helper.make_node("Sub", ["n_hops", "three"], ["n_mel"]),
            helper.make_node("Mul", ["n_mel", "hop"], ["stop"]),
            helper.make_node("Slice", ["input", "zero", "stop", "axis1"], ["cut"]),
            helper.make_node("Reshape", ["cut", "frames_shape"], ["frames"]),
            helper.make_node("MatMul", ["frames", "bank"], ["proj"]),
            helper.make_node("Abs", ["proj"], ["mag"]),
            helper.make_node("Mul", ["mag", "scale"], ["scaled"]),
            helper.make_node("Add", ["scaled", "one"], ["plus1"]),
            helper.make_node("Log", ["plus1"], ["logmag"]),
            # openWakeWord rescales x / 10 + 2: undo it, so the frames are log1p(|.|).
            helper.make_node("Mul", ["logmag", "ten"], ["logmag10"]),
            helper.make_node("Sub", ["logmag10", "twenty"], ["centred"]),
            helper.make_node("Reshape", ["centred", "out_shape"], ["output"]),
        ],
        "stand_in_mel",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, "S"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1, "F", 32])],
        [
            numpy_helper.from_array(np.array([0], np.int64), "zero"),
            numpy_helper.from_array(np.array([160], np.int64), "hop"),
            numpy_helper.from_array(np.array([3], np.int64), "three"),
            numpy_helper.from_array(np.array([1], np.int64), "axis1"),
            numpy_helper.from_array(np.array([-1, 160], np.int64), "frames_shape"),
            numpy_helper.from_array(bank, "bank"),
            numpy_helper.from_array(np.array(1e-2, np.float32), "scale"),
            numpy_helper.from_array(np.array(1.0, np.float32), "one"),
            numpy_helper.from_array(np.array(10.0, np.float32), "ten"),
            numpy_helper.from_array(np.array(20.0, np.float32), "twenty"),
            numpy_helper.from_array(np.array([1, 1, -1, 32], np.int64), "out_shape"),
        ],
    )
    rng = np.random.default_rng(seed)  # another seed: another embedding's weights
    proj = (rng.standard_normal((64, 96)) / 8).astype(np.float32)
    emb_graph = helper.make_graph(
        [
            helper.make_node("Reshape", ["input_1", "win_shape"], ["win"]),  # (W, 76, 32)
            helper.make_node("Slice", ["win", "zero", "half", "axes1"], ["early"]),
            helper.make_node("Slice", ["win", "half", "end", "axes1"], ["late"]),
            helper.make_node("ReduceMean", ["early"], ["m1"], axes=[1], keepdims=0),
            helper.make_node("ReduceMean", ["late"], ["m2"], axes=[1], keepdims=0),
            helper.make_node("Concat", ["m1", "m2"], ["stats"], axis=1),  # (W, 64)
            helper.make_node("MatMul", ["stats", "proj"], ["emb"]),
            helper.make_node("Reshape", ["emb", "emb_shape"], ["output"]),
        ],
        "stand_in_embedding",
        [helper.make_tensor_value_info("input_1", TensorProto.FLOAT, ["W", 76, 32, 1])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["W", 1, 1, 96])],
        [
            numpy_helper.from_array(np.array([-1, 76, 32], np.int64), "win_shape"),
            numpy_helper.from_array(np.array([1], np.int64), "axes1"),
            numpy_helper.from_array(np.array([0], np.int64), "zero"),
            numpy_helper.from_array(np.array([38], np.int64), "half"),
            numpy_helper.from_array(np.array([76], np.int64), "end"),
            numpy_helper.from_array(proj, "proj"),
            numpy_helper.from_array(np.array([-1, 1, 1, 96], np.int64), "emb_shape"),
        ],
    )
    for graph, name in ((mel_graph, "melspectrogram.onnx"), (emb_graph, "embedding_model.onnx")):
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        model.ir_version = IR_VERSION
        onnx.checker.check_model(model)
        onnx.save(model, folder / name)
    return folder
