"""The data wing (numpy side, no torch): what `speechlstm data` makes and `train` reads.

datasets   discover a dataset (Speech Commands layout, folders, CSV), splits, tasks
prepare    a dataset -> in-memory int16 training arrays, silence clips, the noise bank
bank       decoded clips cached on disk, keyed by content
noise      generated background noise (white, pink, brown, hum, babble)
synth      synthesized speech datasets (every installed voice, seeded, resumable)
tts        the text-to-speech engines: espeak-ng, flite, festival, piper, pico
download   resumable, checksum-verified downloads and safe archive extraction
record     the user's own takes from the microphone
streams    labelled streams for tuning and mining (commands + truth, hours of negatives)
links      clips linked (never copied) into dataset folders
"""
