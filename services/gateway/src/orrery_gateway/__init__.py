"""Orrery's public edge: WebSocket, SSE and REST."""
