"""The metadata contract of a speechlstm ONNX model (shared by export and runtime).

Keys live in the ONNX `metadata_props` as JSON strings; a model without them
is not ours and is refused.
"""

from __future__ import annotations

FORMAT_VERSION = 1
KEY_FORMAT = "speechlstm.format_version"
KEY_LABELS = "speechlstm.labels"
KEY_FEATURES = "speechlstm.features"
KEY_MODEL = "speechlstm.model"
KEY_TRAINING = "speechlstm.training"
KEY_QUANTIZATION = "speechlstm.quantization"
REQUIRED_KEYS = (KEY_FORMAT, KEY_LABELS, KEY_FEATURES, KEY_MODEL)

INPUT_NAME = "waveform"
OUTPUT_NAMES = ("probabilities", "logits")
