"""MQTT kiosk bridge (issue #7)."""
