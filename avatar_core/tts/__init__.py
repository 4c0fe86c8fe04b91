"""Text-to-speech voices used as the teacher and in cascade mode."""
