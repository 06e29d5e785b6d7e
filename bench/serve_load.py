"""Load generators of bench/serve.py: wrk when installed, else an asyncio client process.

Both keep `concurrency` requests in flight for `duration` seconds against 127.0.0.1 only,
rotating over the given bodies, and report requests/s, p50/p99 latency and non-2xx.
"""

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import orjson


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    server_cpu: float = 0.0
    others_cpu: float = 0.0


_WRK_SCRIPT = """
local bodies = {%s}
local i = 0
request = function()
  i = i + 1
  return wrk.format("POST", "/predict", {["Content-Type"] = "application/json"},
                    bodies[(i %% #bodies) + 1])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %%d %%d %%.1f %%.1f %%d\\n", summary.requests,
    summary.duration, latency:percentile(50), latency:percentile(99),
    e.status + e.connect + e.read + e.write + e.timeout))
end
"""


def wrk_load(url: str, bodies: list[bytes], duration: float, concurrency: int, tmp: Path) -> Result:
    script = tmp / "predict.lua"
    quoted = ",".join(f"[==[{b.decode()}]==]" for b in bodies)
    script.write_text(_WRK_SCRIPT % quoted)
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{concurrency}",
            f"-d{duration:.0f}s",
            "--timeout",
            "5s",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=duration + 60,
    ).stdout
    line = next(line for line in out.splitlines() if line.startswith("RESULT"))
    requests, micros, p50, p99, errors = line.split()[1:]
    return Result(
        int(requests) / (int(micros) / 1e6), float(p50) / 1000, float(p99) / 1000, int(errors)
    )


_CLIENT = """
import asyncio, sys, time, orjson, httpx
url, path, duration, concurrency = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
bodies = orjson.loads(open(path, "rb").read())
bodies = [b.encode() for b in bodies]
latencies, errors = [], 0
async def worker(client, n, deadline):
    global errors
    i = n
    while time.monotonic() < deadline:
        began = time.perf_counter()
        r = await client.post("/predict", content=bodies[i % len(bodies)],
                              headers={"content-type": "application/json"})
        latencies.append(time.perf_counter() - began)
        errors += r.status_code >= 300
        i += concurrency
async def main():
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=5) as client:
        began = time.monotonic()
        deadline = began + duration
        await asyncio.gather(*(worker(client, n, deadline) for n in range(concurrency)))
        elapsed = time.monotonic() - began
    latencies.sort()
    q = lambda f: latencies[min(len(latencies) - 1, int(f * len(latencies)))] * 1000
    print(orjson.dumps([len(latencies) / elapsed, q(0.5), q(0.99), errors]).decode())
asyncio.run(main())
"""


def python_load(
    url: str, bodies: list[bytes], duration: float, concurrency: int, tmp: Path
) -> Result:
    path = tmp / "bodies.json"
    path.write_bytes(orjson.dumps([b.decode() for b in bodies]))
    out = subprocess.run(
        [sys.executable, "-c", _CLIENT, url, str(path), str(duration), str(concurrency)],
        capture_output=True,
        text=True,
        check=True,
        timeout=duration + 60,
    ).stdout
    rps, p50, p99, errors = orjson.loads(out.strip().splitlines()[-1])
    return Result(rps, p50, p99, int(errors))
