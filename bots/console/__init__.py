"""The console platform: Spaces in a terminal, no token needed (``spaces run`` on a TTY).

``adapter`` prints what the service would send; ``repl`` reads commands; ``translate`` parses them (pure).
"""
