"""Orrery's chat service: streamed turns and memory."""
