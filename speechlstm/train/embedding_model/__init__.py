"""The embedding model (`speechlstm train DATA --frontend embedding`): Google's
speech embedding (../embedding.py) under a small BiLSTM head.

    int16 clip -> centred in 2 s -> mel -> 16 embedding frames (16, 96), cached
    -> BiLSTM (1 layer, bidirectional) -> mean over time -> Linear -> logits

Its settings are the [embedding] section (config.EmbeddingConfig); its run is
train/run.py's run_embedding_model, beside run_training. What it is used for
is named where it is used: a teacher that students distil from (train/distill.py,
`train.teacher = [".../teacher.safetensors"]`), a model users run (export:
train/frontend_export.py), and the verifier of the detection cascade.

    head        the head: one BiLSTM, or several averaged
    frames      the clips' embedding frames: cached, and of augmented copies
    fit         training the heads on the embedded splits
    model_file  the model file (teacher.safetensors): written, and loaded to give logits
"""
