"""Local browser page over WebRTC (issue #8)."""
