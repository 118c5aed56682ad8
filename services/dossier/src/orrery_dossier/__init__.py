"""Orrery's dossier extraction service."""
