"""Orrery's common library."""
