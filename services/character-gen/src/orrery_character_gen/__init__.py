"""Orrery's character generation service."""
