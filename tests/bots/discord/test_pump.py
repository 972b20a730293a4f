"""The pump's clock, on a controllable clock: packets on absolute 20-ms deadlines (a late tick is caught up,
not carried over), a long stall resynchronises instead of bursting, a connection that is not there is
skipped without holding the others. The voice tests (test_voice.py) show the same pump on real discord.py
against the voice emulator; here only its schedule is under test, in logical time."""

from __future__ import annotations

import itertools
import threading
from typing import Any

from bots.audio.feed import FrameHub
from bots.discord.pump import Lane, Pump
from core.audio import SILENCE_FRAME


class Clock:
    """Logical seconds: ``sleep`` advances them (plus a stall scripted for a given tick)."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps = 0
        self.stalls: dict[int, float] = {}  # sleep number → extra seconds lost there
        self.on_sleep: list[Any] = []
        self.gate = threading.Event()  # the pump's first look at the clock waits for every lane to be in

    def __call__(self) -> float:
        assert self.gate.wait(10)
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        self.now += seconds + self.stalls.get(self.sleeps, 0.0)
        for hook in self.on_sleep:
            hook(self.sleeps)


class Client:
    """Stands in for a discord.VoiceClient: what the pump calls, stamped with the logical clock."""

    def __init__(self, clock: Clock, connected: bool = True) -> None:
        self.clock = clock
        self.connected = connected
        self.sent: list[tuple[float, bytes]] = []
        self.ws = self.client = None  # speaking updates fail quietly, as on a closed loop

    def is_connected(self) -> bool:
        return self.connected

    def send_audio_packet(self, data: bytes, *, encode: bool = True) -> None:
        assert not encode
        self.sent.append((self.clock.now, data))


def run(clock: Clock, clients: list[Client], ticks: int) -> list[Lane]:
    """Pump ``ticks`` ticks over one lane per client (a reader each of one hub), then leave them all."""
    hub = FrameHub()
    for i in range(ticks + 10):
        hub.push(bytes([0xFC, i % 256]))
    pump = Pump(clock=clock, sleep=clock.sleep)
    lanes = [Lane(c, hub.reader(margin=ticks + 5), name=str(i)) for i, c in enumerate(clients)]  # type: ignore[arg-type]
    done = threading.Event()

    def leave(n: int) -> None:
        if n == ticks:
            for lane in lanes:
                pump.remove(lane)
            done.set()

    clock.on_sleep.append(leave)
    for lane in lanes:
        pump.add(lane)
    clock.gate.set()
    assert done.wait(10)
    for lane in lanes:
        assert lane.finished.wait(10)
    pump.join(10)
    assert pump.thread is None
    return lanes


def audio_times(client: Client) -> list[float]:
    return [round(t - 100.0, 6) for t, data in client.sent if data != SILENCE_FRAME]


def test_packets_go_on_absolute_deadlines_and_a_late_tick_is_caught_up() -> None:
    clock = Clock()
    clock.stalls = {3: 0.030}  # the third sleep overslept by 30 ms (a busy loop held the GIL)
    [client] = [Client(clock)]
    run(clock, [client], ticks=8)
    times = audio_times(client)
    # 0, 20, 40, then 90 (late), 90 at once (caught up, not carried over), 100 (back on the grid), ...
    assert times[:3] == [0.0, 0.02, 0.04]
    assert times[3] == times[4] == 0.09
    assert times[5:8] == [0.1, 0.12, 0.14]


def test_a_long_stall_resynchronises_instead_of_bursting() -> None:
    clock = Clock()
    clock.stalls = {3: 1.0}  # a second lost: 50 frames late
    [client] = [Client(clock)]
    run(clock, [client], ticks=8)
    times = audio_times(client)
    assert times[:4] == [0.0, 0.02, 0.04, 1.06]
    # no burst of the 50 missed frames: the next packet 20 ms on, and each after it
    assert [round(b - a, 6) for a, b in itertools.pairwise(times[3:])] == [0.02] * (len(times) - 4)


def test_a_channel_not_connected_is_skipped_and_the_others_keep_the_rhythm() -> None:
    clock = Clock()
    up, down = Client(clock), Client(clock, connected=False)
    [lane_up, lane_down] = run(clock, [up, down], ticks=6)
    assert audio_times(up) == [0.0, 0.02, 0.04, 0.06, 0.08, 0.1]
    assert down.sent == [] and lane_down.skipped == 6  # never a packet, no goodbye on a lost connection
    assert [data for _, data in up.sent[-5:]] == [SILENCE_FRAME] * 5  # the goodbye on the connected one
    assert lane_up.sent == 6 and lane_up.errors == 0


def test_a_send_that_raises_is_counted_and_the_pump_goes_on() -> None:
    clock = Clock()
    good, bad = Client(clock), Client(clock)

    def broken(data: bytes, *, encode: bool = True) -> None:
        raise OSError("injected")

    bad.send_audio_packet = broken  # type: ignore[method-assign]
    [lane_good, lane_bad] = run(clock, [good, bad], ticks=5)
    assert len(audio_times(good)) == 5 and lane_good.failing == 0
    assert lane_bad.errors == 5 and lane_bad.failing == 5 and lane_bad.last_error == "OSError"
