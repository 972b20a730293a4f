"""A live Space's audio in this process: one ffmpeg decodes the host's source once into 20-ms Opus frames
(``ffmpeg``, ``ogg``), a hub hands the same frames to every voice channel and web listener (``feed``), and a
bridge puts it together for one Space (``bridge``).

Imports core, the standard library, ffmpeg-python and aiohttp only: never a platform SDK nor storage.
"""
