"""Orrery's auth service: magic links, guests, JWT."""
