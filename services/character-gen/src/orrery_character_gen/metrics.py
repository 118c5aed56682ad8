"""Prometheus metrics of the character-gen service (served at /metrics with the shared ones)."""

from prometheus_client import Counter, Histogram

SPINS = Counter(
    "orrery_character_spins_total",
    "Spins handled, by outcome (created, failed, duplicate)",
    ["outcome"],
)
SPIN_SECONDS = Histogram(
    "orrery_character_spin_seconds",
    "Time from consuming a spin to storing its character",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 40, 80, 160),
)
PORTRAITS = Counter("orrery_character_portraits_total", "Portraits stored, by provider", ["provider"])
PORTRAIT_FAILURES = Counter(
    "orrery_character_portrait_failures_total",
    "Image provider failures that fell through to the next provider",
    ["provider"],
)
IMPORTS = Counter("orrery_character_imports_total", "Card imports, by outcome (created, rejected)", ["outcome"])
