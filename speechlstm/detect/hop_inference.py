"""How a recognizer runs every hop of a stream: the model decides, not the detector.

    MFCC model (the card's)        WindowBatches: each due window classified
                                   whole, the loud ones batched into one call
    speech-embedding front-end     EmbeddingFrames: one embedding frame a hop,
                                   its state carried between hops
                                   (embedding_stream.py); its hop is that frame's

`hop_inference(recognizer)` picks one. StreamingDetector (stream.py) asks it
for the settings it streams at and its hop length, and hands it each batch of
due windows; it never looks at the model's front-end itself. numpy +
onnxruntime only.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..config import DetectorConfig

__all__ = ["EmbeddingFrames", "WindowBatches", "hop_inference"]


class WindowBatches:
    """A model that hears a window whole: the loud windows of a batch in one
    onnxruntime call; a gated window is not run at all."""

    def __init__(self, recognizer):
        self.rec = recognizer

    def settings(self, cfg: DetectorConfig) -> DetectorConfig:
        """The detector settings it streams at: `cfg` as given."""
        return cfg

    def hop_samples(self, hop_ms: float) -> int:
        """The detector's hop at the model's rate (at least one sample)."""
        return max(1, round(self.rec.sample_rate * hop_ms / 1000))

    def reset(self) -> None:
        pass  # nothing carried between hops

    def run(self, windows: np.ndarray, active: np.ndarray, probs: np.ndarray) -> int:
        """Write the model's posteriors for the `active` rows of `windows` (B,
        window) into `probs` (B, classes); returns the windows the model ran on."""
        if not active.any():
            return 0
        probs[active] = self.rec.predict(windows[active])
        return int(active.sum())


class EmbeddingFrames:
    """A speech-embedding model streamed one embedding frame a hop: every hop
    advances its state, gated or not; the gate still turns a silent window
    into silence."""

    def __init__(self, recognizer):
        from .embedding_stream import EmbeddingStream

        self.stream = EmbeddingStream(recognizer.file.path, recognizer.temperature)
        self.rate_hz = recognizer.sample_rate

    def settings(self, cfg: DetectorConfig) -> DetectorConfig:
        """`cfg` at the hop it really runs at: one embedding frame."""
        return dataclasses.replace(cfg, hop_ms=1000 * self.stream.hop_samples / self.rate_hz)

    def hop_samples(self, hop_ms: float) -> int:
        """One embedding frame, whatever hop the settings ask for."""
        return self.stream.hop_samples

    def reset(self) -> None:
        self.stream.reset()

    def run(self, windows: np.ndarray, active: np.ndarray, probs: np.ndarray) -> int:
        hop = self.stream.hop_samples
        for i, window in enumerate(windows):
            p = self.stream.step(window[-hop:])
            if active[i]:
                probs[i] = p
        return len(windows)


def hop_inference(recognizer) -> WindowBatches | EmbeddingFrames:
    """How `recognizer` (runtime.OnnxRecognizer) runs each hop of a stream."""
    if recognizer.description.frontend == "embedding":
        return EmbeddingFrames(recognizer)
    return WindowBatches(recognizer)
