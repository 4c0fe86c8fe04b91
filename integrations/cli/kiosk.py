"""``dyad kiosk``: one kiosk's avatar bridged to MQTT."""

from __future__ import annotations

import typer

from integrations.cli.unavailable import PENDING, unavailable


def kiosk() -> None:
    """Run the avatar for one kiosk, bridged to MQTT."""
    unavailable("kiosk", 7, "the MQTT kiosk bridge")


def register(app: typer.Typer) -> None:
    """Add ``kiosk`` to the top-level app."""
    app.command("kiosk", context_settings=PENDING)(kiosk)
