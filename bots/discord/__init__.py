"""Discord: discord.py 2.7 on the core (the gateway, or HTTP interactions on the web app)."""
