"""The training side: the only place torch and torchaudio are imported.

    features   MFCC front-end (torchaudio) and the ONNX-friendly DFT mel
    augment    on-device waveform augmentation and SpecAugment
    cells      recurrent cells written from their equations
    model      the bidirectional recurrent classifier
    trainer    the training loop, resume, the final report
    checkpoint the checkpoint record: written atomically, loaded with weights_only
    export     checkpoint -> self-describing ONNX model
    onnx_rnn   the recurrent part of the ONNX graph, operator by operator

Everything outside this package runs with numpy and onnxruntime alone.
"""
