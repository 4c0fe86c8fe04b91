"""The `dyad` command line."""
