"""What every platform emulator shares: its life as an async context manager.

``async with SomeEmulator() as emu:`` starts it, stops it on exit, and — when the block ended without an
exception and the emulator is ``strict`` — fails the test if any request it received is one the real
platform would have rejected (``assert_clean``): a test cannot pass on calls the platform would refuse."""

from __future__ import annotations

from typing import Any, Self


class StrictEmulator:
    strict: bool = True

    async def start(self) -> Self:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    def assert_clean(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        await self.stop()
        if exc_type is None and self.strict:
            self.assert_clean()
