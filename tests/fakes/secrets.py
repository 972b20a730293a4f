"""The secrets tests configure: shaped like the real ones (each passes its platform's format checks), and each
containing :data:`CANARY`, so that the session's log check (tests/logcapture.py) finds any of them — or any
other secret a test makes with the canary in it — in any log line a test or a spawned process wrote.

Use these (or put ``CANARY`` in your own) whenever a test configures a token, a secret or a password.
"""

from __future__ import annotations

CANARY = "LeakCanary"

TELEGRAM_TOKEN = "7000000001:AAE-LeakCanary-telegram-0123456789abcdef"
TELEGRAM_WEBHOOK_SECRET = "LeakCanary-webhook-secret_0123456789"
SLACK_BOT_TOKEN = "xoxb-1-LeakCanary-0123456789"
SLACK_SIGNING_SECRET = "LeakCanary0123456789abcdef0123456789"
SLACK_APP_TOKEN = "xapp-1-LeakCanary-0123456789"
DISCORD_BOT_TOKEN = "MTA0LeakCanary0123456789.GxLeak.LeakCanary-discord-0123456789abc"
METRICS_TOKEN = "LeakCanary-metrics-token-0123456789"
DB_PASSWORD = "LeakCanary-db-password"

ALL = (
    TELEGRAM_TOKEN,
    TELEGRAM_WEBHOOK_SECRET,
    SLACK_BOT_TOKEN,
    SLACK_SIGNING_SECRET,
    SLACK_APP_TOKEN,
    DISCORD_BOT_TOKEN,
    METRICS_TOKEN,
    DB_PASSWORD,
)
assert all(CANARY in s for s in ALL)
