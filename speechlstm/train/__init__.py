"""The training side: torch and torchaudio are imported only in this package.

    features     MFCC front-end (torchaudio) and the ONNX-friendly DFT mel
    augment      on-device waveform augmentation and SpecAugment
    cells        recurrent cells written from their equations
    model        the bidirectional recurrent classifier
    run          a run: the folder, the data, resume, the final report; the embedding
                 model's run beside it
    trainer      the loop and the step (augment, sources, features, loss, step)
    sources      learning sources: what a student learns besides its labels (the protocol)
    history      epoch records, formatting, early stopping, validation
    optim        device, learning-rate schedule, parameter groups
    sampling     class-balanced draws
    threads      torch's CPU thread count on a shared machine
    signals      Ctrl-C and SIGTERM stop a run cleanly, never mid-write
    distributed  torchrun ranks, process groups, barriers
    encoder      the pretrained encoder: save, load, start a run from it
    embedding    Google's speech embedding (openwakeword 0.4.0's files), cached
    embedding_model/  the embedding model: the embedding + a BiLSTM head (train --frontend
                 embedding); its map is embedding_model/__init__.py
    distill      the shipped learning sources: logit distillation from teachers, feature
                 distillation to the embedding
    checkpoint   the checkpoint record: written atomically, loaded with weights_only
    export       checkpoint -> self-describing ONNX model
    frontend_export  an embedding-model run -> one ONNX file with the embedding inside
    calibrate    a temperature fitted on validation clips (export --calibrate)
    onnx_rnn     the recurrent part of the ONNX graph, operator by operator

Everything outside this package runs with numpy and onnxruntime alone.
"""
