"""Speech features: prosody and (with the joint model) WORLD vocoder parameters."""
