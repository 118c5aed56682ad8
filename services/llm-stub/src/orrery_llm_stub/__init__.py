"""An OpenAI-compatible offline stub server for development and tests."""
