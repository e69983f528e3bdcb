"""speechlstm: speech command recognition with MFCC features and a bidirectional LSTM.

Two sides, one boundary:

- the inference side (every module here outside `train/`: audio, runtime,
  transcribe, stream, scoring, live, data making) needs numpy, onnxruntime,
  soundfile and soxr, never torch;
- the training side (`speechlstm.train`: features, model, trainer, export)
  is the only place torch and torchaudio are imported.

`Recognizer` and `Detector` (api.py) are the public API.
A model crosses the boundary as an ONNX file whose metadata is the typed
`modelmeta.ModelDescription`. The package root imports nothing heavy.
"""

__version__ = "0.1.0"

# The public API (docs/api.md), imported when first used: `import speechlstm`
# stays free of numpy, onnxruntime and the training side.
__all__ = ["Detection", "Detector", "Prediction", "Recognizer", "__version__"]
_API = frozenset({"Detection", "Detector", "Prediction", "Recognizer"})


def __getattr__(name: str):
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'speechlstm' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
