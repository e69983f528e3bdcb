"""Models with the speech-embedding front-end (`train --frontend embedding`, then
`export`): their graph's named stages, and their streaming path. onnxruntime,
onnx and numpy only, no torch.

One self-contained graph (train/frontend_export.py writes it):

    waveform (1, 16000) in [-1, 1]
      -> x 32768, centred in 2 s of zeros      `mel_input` (1, 32000)
      -> mel model, x / 10 + 2                  `mel_frames` (1, 197, 32)
      -> 16 windows of 76 frames, every 8       `mel_windows` (16, 76, 32, 1)
      -> embedding model                        `embedding_frames` (1, 16, 96)
      -> BiLSTM head                            probabilities, logits

A clip is one call of the whole graph, like any speechlstm model. A stream is
not: re-running 2 s of audio every hop would cost ~30 ms a hop. EmbeddingStream
splits the graph at its named tensors and carries state between hops, as
openWakeWord's streaming AudioFeatures does: every 80 ms of new audio, the mel
model runs on those samples plus 30 ms of context (8 new mel frames), the
embedding model on the last 76 mel frames (one new embedding frame), and the
head on the last 16 embedding frames (1.96 s of audio). Before any audio, the
state is the embedding of silence, the zeros the clips were centred in.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path

import numpy as np

from ..modelmeta import OUTPUT_NAMES

MEL_INPUT = "mel_input"  # (1, CONTEXT_SAMPLES) int16-range samples
MEL_FRAMES = "mel_frames"  # (1, frames, MEL_BINS), openWakeWord's scaling applied
MEL_WINDOWS = "mel_windows"  # (windows, WINDOW_FRAMES, MEL_BINS, 1)
EMBEDDING_FRAMES = "embedding_frames"  # (1, N_FRAMES, EMBED_DIM)

INT16_SCALE = 32768.0  # the embedding was trained on int16-range audio
CONTEXT_SAMPLES = 32_000  # 2.0 s: a clip is centred in this many samples
MEL_BINS = 32
MEL_HOP_SAMPLES = 160
MEL_CONTEXT_SAMPLES = 480  # the mel model's 3 frames of look-back
WINDOW_FRAMES = 76  # mel frames per embedding window (775 ms)
STRIDE_FRAMES = 8  # mel frames between embedding frames
STRIDE_SAMPLES = STRIDE_FRAMES * MEL_HOP_SAMPLES  # 1280: one embedding frame per 80 ms
N_FRAMES = 16  # embedding frames the head looks at
EMBED_DIM = 96


def stage_sessions(path: str | Path, threads: int = 1):
    """(mel, embedding, head) onnxruntime sessions cut from an embedding-front-end
    model at its named tensors (onnx.utils.Extractor): each stage alone, so a
    stream runs each at its own rate."""
    cuts = (
        ([MEL_INPUT], [MEL_FRAMES]),
        ([MEL_WINDOWS], [EMBEDDING_FRAMES + "_raw"]),
        ([EMBEDDING_FRAMES], list(OUTPUT_NAMES)),
    )
    import onnxruntime as ort

    from ..runtime import ModelError

    try:
        import onnx
        import onnx.utils
    except ImportError:
        raise ModelError(
            f"{path}: streaming a speech-embedding model needs the onnx package (pip install onnx)"
        ) from None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(0, threads)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    sessions = []
    try:
        extractor = onnx.utils.Extractor(onnx.load(str(path)))
        for inputs, outputs in cuts:
            part = extractor.extract_model(inputs, outputs)
            # The graph types its stages at clip sizes; a stream feeds a hop's worth.
            del part.graph.value_info[:]
            for value in list(part.graph.input) + list(part.graph.output):
                for i, dim in enumerate(value.type.tensor_type.shape.dim):
                    dim.Clear()
                    dim.dim_param = f"{value.name}_{i}"
            cpu = ["CPUExecutionProvider"]
            sessions.append(ort.InferenceSession(part.SerializeToString(), opts, providers=cpu))
    except Exception as exc:  # onnx and onnxruntime raise several types of their own
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ModelError(
            f"{path}: says it has the speech-embedding front-end, but its stages "
            f"cannot be cut out to stream it ({reason})"
        ) from None
    return tuple(sessions)


class EmbeddingStream:
    """Probabilities every STRIDE_SAMPLES of audio, with the mel and embedding
    state carried between hops: one embedding frame a hop."""

    def __init__(self, path: str | Path, temperature: float = 1.0, threads=1):
        self.mel, self.embed, self.head = stage_sessions(path, threads)
        self.temperature = temperature
        self.hop_samples = STRIDE_SAMPLES
        self._silence_state()
        self.reset()

    def _silence_state(self) -> None:
        """The mel and embedding frames of the 2 s of zeros clips are centred in."""
        zeros = np.zeros((1, CONTEXT_SAMPLES), np.float32)
        mel = self.mel.run([MEL_FRAMES], {MEL_INPUT: zeros})[0][0]  # (197, 32)
        starts = range(0, mel.shape[0] - WINDOW_FRAMES + 1, STRIDE_FRAMES)
        windows = np.stack([mel[s : s + WINDOW_FRAMES] for s in starts])[..., None]
        emb = self.embed.run(None, {MEL_WINDOWS: windows.astype(np.float32)})[0]
        self._mel0 = mel[-WINDOW_FRAMES:].copy()
        self._emb0 = emb.reshape(-1, EMBED_DIM)[-N_FRAMES:].copy()

    def reset(self) -> None:
        self.audio = np.zeros(MEL_CONTEXT_SAMPLES, np.float32)  # look-back, int16 range
        self.mel_frames = deque(self._mel0, maxlen=WINDOW_FRAMES)
        self.emb_frames = deque(self._emb0, maxlen=N_FRAMES)

    def step(self, hop: np.ndarray) -> np.ndarray:
        """STRIDE_SAMPLES new float samples in [-1, 1] -> probabilities (classes,)."""
        hop = np.asarray(hop, np.float32).reshape(-1)
        if hop.size != STRIDE_SAMPLES:
            raise ValueError(f"expected {STRIDE_SAMPLES} samples a step, got {hop.size}")
        audio = np.concatenate([self.audio, hop * INT16_SCALE])
        self.audio = audio[-MEL_CONTEXT_SAMPLES:]
        mel = self.mel.run([MEL_FRAMES], {MEL_INPUT: audio[None]})[0][0]  # (8, 32)
        self.mel_frames.extend(mel)
        window = np.asarray(self.mel_frames, np.float32)[None, :, :, None]
        emb = self.embed.run(None, {MEL_WINDOWS: window})[0].reshape(EMBED_DIM)
        self.emb_frames.append(emb)
        frames = np.asarray(self.emb_frames, np.float32)[None]
        if self.temperature == 1.0:
            return self.head.run([OUTPUT_NAMES[0]], {EMBEDDING_FRAMES: frames})[0][0]
        logits = self.head.run([OUTPUT_NAMES[1]], {EMBEDDING_FRAMES: frames})[0][0]
        z = logits.astype(np.float64) / self.temperature
        e = np.exp(z - z.max())
        return (e / e.sum()).astype(np.float32)
