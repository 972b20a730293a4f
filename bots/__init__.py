"""The outside of Spaces: platform adapters, the web app, the runtime, and the composition root (bots.app)."""
