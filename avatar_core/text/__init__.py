"""Text frontend: normalisation and phonemes."""
