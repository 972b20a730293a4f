"""Platform-neutral heart of Spaces: the Space lifecycle, the reminder plan, texts and ports.

Nothing in here imports a platform SDK or the SQL layer (enforced by import-linter).
"""
