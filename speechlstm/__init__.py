"""speechlstm: speech command recognition with MFCC features and a bidirectional LSTM.

Two sides, one boundary:

- the inference side (every module here outside `train/`: audio, runtime,
  transcribe, stream, scoring, live, data making) needs numpy, onnxruntime,
  soundfile and soxr, never torch;
- the training side (`speechlstm.train`: features, model, trainer, export)
  is the only place torch and torchaudio are imported.

A model crosses the boundary as an ONNX file whose metadata is the typed
`modelmeta.ModelDescription`. The package root imports nothing heavy.
"""

__version__ = "0.1.0"
