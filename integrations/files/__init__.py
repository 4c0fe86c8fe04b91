"""Offline input and output from recorded files (dyad render, converse, dialogue)."""
