"""Discord: discord.py 2.7 on the core (the gateway, or the HTTP interactions endpoint on the web app)."""
