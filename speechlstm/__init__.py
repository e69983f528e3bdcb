"""speechlstm: speech command recognition with MFCC features and a bidirectional LSTM.

The package root imports nothing heavy: the inference side (runtime,
transcribe, audio) needs only numpy, soundfile and onnxruntime; the training
side (features, model, train, export) needs torch and is imported on demand.
"""

__version__ = "0.1.0"
