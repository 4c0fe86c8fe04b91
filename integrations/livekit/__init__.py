"""LiveKit room transport, agent worker and AvatarSession plugin (issue #6)."""
