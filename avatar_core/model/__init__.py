"""The joint text -> speech + face-motion model (AV-Flow adapted to a CPU)."""
