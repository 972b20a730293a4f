"""Live audio: one ffmpeg per live Space, its frames fanned out to voice channels and web listeners."""
