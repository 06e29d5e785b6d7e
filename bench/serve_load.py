"""Load generators of bench/serve.py: wrk when installed, else bench/load_client.py.

Both keep `concurrency` requests in flight for `duration` seconds against 127.0.0.1 only,
rotating over the given bodies, and report requests/s, p50/p99 latency and non-2xx.
"""

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]


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


def python_load(
    url: str, bodies: list[bytes], duration: float, concurrency: int, tmp: Path
) -> Result:
    path = tmp / "bodies.json"
    path.write_bytes(orjson.dumps([b.decode() for b in bodies]))
    argv = [str(path), url, "--duration", str(duration), "--concurrency", str(concurrency)]
    done = subprocess.run(
        [sys.executable, "-m", "bench.load_client", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=duration + 60,
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench/load_client.py failed:\n{done.stderr}")
    rps, p50, p99, errors = orjson.loads(done.stdout.strip().splitlines()[-1])[:4]
    return Result(rps, p50, p99, int(errors))
