"""The detection wing (numpy + onnxruntime, no torch): commands found in a stream.

stream            the streaming detector: ring buffer, inference every hop, gate, smoothing
hop_inference     how a recognizer runs each hop: batched windows, or embedding frames
embedding_stream  embedding models streamed frame by frame
debounce          the detection decision: smoothed scores -> one report an utterance
verify            the second stage: a verifier rules on each candidate
cascade           model + verifier as one detector: the verifier a decision behind the trigger
tuning            the detector tuner (speechlstm tune-detector): search, operating points
labelled          what the tuner reads: recordings streamed in blocks, their truth
mining            hard negatives mined from long audio (speechlstm data mine)
live              the live loop: microphone or file -> detector -> output
hooks             live --exec: commands run off the audio path
saved             live --save-detections: each detection's audio kept
"""
