"""Telegram: python-telegram-bot 22 on the core (long polling by default, or a webhook on the web app)."""
