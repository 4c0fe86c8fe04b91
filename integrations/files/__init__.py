"""Offline input and output from recorded files (issue #5)."""
