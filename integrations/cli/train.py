"""``dyad train data|fit|eval``: the joint model's dataset, training and evaluation."""

from __future__ import annotations

import typer

from integrations.cli.unavailable import PENDING, unavailable

app = typer.Typer(help="Build the teacher dataset and train the joint model.", no_args_is_help=True)


@app.command("data", context_settings=PENDING)
def data() -> None:
    """Generate the teacher dataset, or convert talking-head videos."""
    unavailable("train data", 4, "the joint model's data and training")


@app.command("fit", context_settings=PENDING)
def fit() -> None:
    """Train the joint model."""
    unavailable("train fit", 4, "the joint model's data and training")
