"""`ingot edge` as a process: it announces where it listens, serves, and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import re
import signal
import sys

import aiohttp


async def test_edge_process_announces_serves_and_stops() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ingot.cli", "edge", "--port", "0", "--log-level", "warning",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        match = re.fullmatch(r"ingot edge listening on (http://127\.0\.0\.1:(\d+))\n", line)
        assert match and match.group(2) != "0", line
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{match.group(1)}/health") as resp:
                assert (resp.status, await resp.json()) == (200, {"status": "ok"})
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
