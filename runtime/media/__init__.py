"""Media transports: WebRTC (aiortc) and the WebSocket fallback, between callers and voice sessions."""
