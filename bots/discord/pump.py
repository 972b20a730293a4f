"""One sender thread for every Discord voice connection of this process.

discord.py's ``VoiceClient.play`` runs an AudioPlayer thread per connection, each waking every 20 ms: with N
bridged channels that is N threads fighting the busy event loop for the GIL, and the benchmark showed those
wake-ups were nearly all of what one more channel cost. The :class:`Pump` does the same work for every
channel in ONE thread: every 20 ms, on absolute deadlines (``start + 0.02 × n``, as the player does), it reads
one frame per channel from that channel's reader and hands it to the public
``VoiceClient.send_audio_packet(frame, encode=False)`` — encryption, DAVE, sequence numbers and timestamps stay
discord.py's.

What discord.py's player does around the send, reproduced per channel (:class:`Lane`): speaking is set before
the first packet (and again after the connection came back), five silence frames are sent and speaking unset
when the channel leaves. Where the player waits for a lost connection, the pump never waits on one
connection: it skips that channel until discord.py says connected again, the others keep their rhythm. A send
that raises is counted on its lane (the watchdog reads the counts), never allowed to stop the pump.

After a long stall (the process suspended, a very long GIL hold) the pump resynchronises its clock rather than
bursting the missed frames out at once: a burst is heard as garbage, not as catching up.

The trade-off: the sends of one tick are serial, and each ``sendall`` (and the encryption) releases the GIL; an
event loop busy in Python may take it and keep it up to a switch interval (5 ms) before the pump gets it back,
so the later channels of a tick can be late by a few of those. With a player thread per channel those waits
overlap instead. The benchmark's fan-out runs measure what this costs the pacing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable

import discord
from discord.enums import SpeakingState
from discord.opus import Encoder

from core.audio import FRAME_MS, SILENCE_FRAME
from core.ports import FrameReader

log = logging.getLogger(__name__)

DELAY = FRAME_MS / 1000.0  # seconds between two frames of one channel
RESYNC_AFTER = 0.2  # seconds behind schedule past which the clock restarts instead of catching up
SILENCE_FRAMES = 5  # what discord.py's player sends when it stops (Discord's advice against interpolation)
THREAD_NAME = "discord-voice-pump"

assert Encoder.SAMPLES_PER_FRAME == 960  # discord.py's timestamps step one 20-ms frame per packet


class Lane:
    """One voice connection's place in the pump: its client, its reader, and what the pump saw.

    The counters are written by the pump thread only and read by the watchdog on the loop (plain int and
    float attributes: a torn read is impossible under the GIL, a slightly stale one harmless)."""

    def __init__(
        self,
        vc: discord.VoiceClient,
        reader: FrameReader,
        on_finished: Callable[[], None] | None = None,
        *,
        name: str = "",
    ) -> None:
        self.vc = vc
        self.name = name  # the channel, for the logs
        self.reader = reader
        self._on_finished = on_finished
        self.finished = threading.Event()  # the pump let go of the reader (ended, or left)
        self.ended = False  # the reader ran dry (b""): the feed is gone, not the connection
        self.leaving = False
        self.speaking = False
        self.sent = 0  # packets handed to discord.py
        self.skipped = 0  # ticks spent not connected
        self.errors = 0  # sends that raised, in all
        self.failing = 0  # sends that raised in a row (0 once one goes through)
        self.last_error = ""
        self.thread: threading.Thread | None = None  # the thread that let go of the reader

    def finish(self) -> None:
        """Close the reader and tell whoever waits; idempotent, from any thread."""
        self.reader.close()
        if not self.finished.is_set():
            self.thread = threading.current_thread()
            self.finished.set()
            if self._on_finished is not None:
                self._on_finished()

    # ------------------------------------------------------------------ in the pump thread

    def tick(self) -> None:
        vc = self.vc
        if not vc.is_connected():
            # discord.py is re-connecting (or gone): skip this channel without waiting on it; once it is
            # back, speaking is set again, as the player does after its wait
            self.skipped += 1
            self.speaking = False
            return
        if not self.speaking:
            self._speak(SpeakingState.voice)
            self.speaking = True
        data = self.reader.read()
        if not data:
            self.ended = True
            self.stop()
            return
        try:
            vc.send_audio_packet(data, encode=False)
        except Exception as e:  # a socket or encryption surprise: counted, the watchdog judges
            self.errors += 1
            self.failing += 1
            if self.failing == 1:
                log.warning("discord voice send failed: %s", type(e).__name__, extra={"channel": self.name})
            self.last_error = type(e).__name__
        else:
            self.sent += 1
            self.failing = 0

    def stop(self) -> None:
        """The player's goodbye: five silence frames and speaking unset, if still connected; then let go."""
        try:
            if self.vc.is_connected():
                with contextlib.suppress(Exception):  # as discord.py: too inconsequential to log
                    for _ in range(SILENCE_FRAMES):
                        self.vc.send_audio_packet(SILENCE_FRAME, encode=False)
                if self.speaking:
                    self._speak(SpeakingState.none)
            self.speaking = False
        finally:
            self.finish()

    def _speak(self, state: SpeakingState) -> None:
        # the voice websocket lives on the client's loop: the op is sent from there, not awaited here
        vc = self.vc
        try:
            future = asyncio.run_coroutine_threadsafe(vc.ws.speak(state), vc.client.loop)
        except Exception:  # the loop is closed, or the websocket is not there yet
            log.debug("discord voice speaking update failed", exc_info=True)
            return
        future.add_done_callback(_swallow)


def _swallow(future: object) -> None:
    with contextlib.suppress(Exception):
        future.exception()  # type: ignore[attr-defined]


class Pump:
    """The sender thread of a set of lanes. The thread starts with the first lane and ends when the last one
    has left (or on :meth:`close`): no channel linked, no thread."""

    def __init__(
        self,
        *,
        delay: float = DELAY,
        resync_after: float = RESYNC_AFTER,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.delay = delay
        self.resync_after = resync_after
        self._clock = clock  # seconds, monotonic; a test's controllable clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._lanes: list[Lane] = []
        self._thread: threading.Thread | None = None
        self.resyncs = 0  # times the clock restarted after a stall
        self.late = 0  # ticks that started after their deadline

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def add(self, lane: Lane) -> None:
        with self._lock:
            self._lanes.append(lane)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
                self._thread.start()

    def remove(self, lane: Lane) -> None:
        """Ask the pump to say goodbye on this lane (silence, speaking off) and let go of its reader, on its
        next tick; at once if the pump is not running. Wait on ``lane.finished``."""
        with self._lock:
            if lane.leaving or lane.finished.is_set():
                return  # asked already, or it ended and said its goodbye then
            lane.leaving = True
            if self._thread is not None and self._thread.is_alive() and lane in self._lanes:
                return
            if lane in self._lanes:
                self._lanes.remove(lane)
        lane.stop()

    def close(self, timeout: float = 1.0) -> None:
        with self._lock:
            lanes = list(self._lanes)
        for lane in lanes:
            self.remove(lane)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def join(self, timeout: float) -> None:
        """Wait for the thread to end if it has nothing left to send (after the last lane left)."""
        with self._lock:
            thread = self._thread if not self._lanes else None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        start = self._clock()
        ticks = 0
        while True:
            with self._lock:
                leaving = [lane for lane in self._lanes if lane.leaving or lane.finished.is_set()]
                for lane in leaving:
                    self._lanes.remove(lane)
                lanes = list(self._lanes)
                if not lanes and not leaving:
                    self._thread = None
                    return
            for lane in leaving:
                if lane.finished.is_set():
                    continue  # it ended on its own and said goodbye then
                try:
                    lane.stop()
                except Exception:
                    log.exception("discord voice pump: a lane failed to stop", extra={"channel": lane.name})
            if leaving and not lanes:
                with self._lock:
                    if not self._lanes:  # the last one left: no channel, no thread (and leave() may join)
                        self._thread = None
                        return
                    lanes = list(self._lanes)
            for lane in lanes:
                try:
                    lane.tick()
                except Exception:  # a bug or a discord.py surprise: this lane stops, the others go on
                    log.exception("discord voice pump: a lane failed", extra={"channel": lane.name})
                    lane.errors += 1
                    lane.last_error = "pump"
                    lane.ended = True
                    with contextlib.suppress(Exception):
                        lane.finish()
            ticks += 1
            wait = start + self.delay * ticks - self._clock()
            if wait < -self.resync_after:
                # a long stall: this late tick becomes the new origin, the next one a frame after it
                self.resyncs += 1
                start, ticks = self._clock(), 1
                wait = self.delay
            if wait < 0:
                self.late += 1
                continue
            self._sleep(wait)


__all__ = ["Lane", "Pump"]
