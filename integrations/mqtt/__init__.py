"""MQTT kiosk bridge: one kiosk's avatar, its state, transcripts, events and remote commands."""
