"""Generated inputs for the tests and benchmarks (as numpy.testing, torch.testing).

- synth_audio: tone "words" spoken by pitch-shifted "speakers", and datasets
  of them in the Speech Commands layout (numpy + soundfile);
- tiny_onnx: a small template-matching model with the speechlstm contract,
  built with onnx.helper, so inference can be exercised without torch (needs
  the `onnx` package: the dev extra);
- cli: the command line as a user runs it, in a child process.

Nothing here is used by the commands; it ships so that `tests/` and `bench/`
share one copy without reaching into each other's folders.
"""
