"""Committed artefacts shipped as package data: ``avflow/`` holds the joint model's checkpoint and its
model card (``avflow/README.md``). Code finds them with :mod:`importlib.resources`, so they are found
in a source checkout and in an installed wheel alike."""
