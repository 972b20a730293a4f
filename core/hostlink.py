"""The host's private page: where the host speaks from a browser (the microphone source) and sees the audio.

Its link carries the Space's ``host_key`` (core.ids.new_host_key), so whoever has the link can speak in the
Space: it is given to the host alone — an ephemeral answer, a DM — and never put on a card, in a subscriber's
notice or in a mention in a chat (core/notices.py keeps it out of those; tests/core/test_host_link.py checks).
"""

from __future__ import annotations

from urllib.parse import quote


def host_link(share_link: str, host_key: str) -> str:
    """``{share link}/host?key={host key}``: the share page's own address (core.ports.Links.space), one
    level down, so the web app serves both from the same Space id."""
    return f"{share_link.rstrip('/')}/host?key={quote(host_key, safe='')}"
