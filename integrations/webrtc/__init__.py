"""Local browser page over WebRTC (dyad serve)."""
