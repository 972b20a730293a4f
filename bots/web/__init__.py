"""The one web application: health, metrics, Space pages, and the routes platform adapters contribute."""
