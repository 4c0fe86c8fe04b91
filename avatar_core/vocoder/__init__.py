"""A small trained vocoder for the joint model's speech features (a drop-in for ``features.synthesize``).

``config`` (sizes registry and training settings), ``model`` (the network), ``losses`` (multi-resolution
STFT and mel), ``train`` (the resumable training loop) and ``infer`` (the inference wrapper: whole
utterances, streaming chunks with context, real-time factor).
"""
