"""Slack: slack-bolt's AsyncApp on the core (HTTP events on the web app, or Socket Mode), one app for many
workspaces (a bot token each, from the OAuth install or SLACK_BOT_TOKEN)."""
