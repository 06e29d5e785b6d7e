"""How long the dashboard's charts take to draw 10,000 and more points, in headless Chromium.

    .venv/bin/python bench/dashboard.py [--repeat 20]

Loads the page's own chart code (api/static/chart.js) into a blank page of Debian's
`chromium` (scripts/bootstrap installs it), draws a chart of two series, 900 pixels wide,
with 100 points (the baseline) and with 10,000 and 100,000, and prints the median time of
a full redraw and its ratio to the baseline. Per-pixel-column decimation should keep the
10,000-point draw within a few milliseconds: well inside the page's one-second refresh.
"""

import argparse
import statistics
import sys
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

ROOT = Path(__file__).resolve().parent.parent

TIME_DRAW = """
const [n, repeat] = [arguments[0], arguments[1]];
document.body.innerHTML = '<canvas id="c" style="width:900px;height:200px"></canvas>';
const xs = [], a = [], b = [];
let v = 0.5;
for (let i = 0; i < n; i++) {
  xs.push(1.8e9 + i);
  v = Math.min(1, Math.max(0, v + (Math.random() - 0.5) * 0.02));
  a.push(v);
  b.push(i % 997 === 0 ? null : 0.5 + 0.3 * Math.sin(i / 500));
}
const chart = new HeadraceCharts.TimeChart(document.getElementById("c"), [
  { key: "a", color: "#2463eb" }, { key: "b", color: "#9aa4b8" }], { min: 0, robust: true });
chart.setData(xs, { a, b });
chart.setMarkers([xs[Math.floor(n / 2)]]);
chart.draw();
const times = [];
for (let r = 0; r < repeat; r++) {
  const t0 = performance.now();
  chart.draw();
  times.push(performance.now() - t0);
}
return times;
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=20, help="redraws per size (default 20)")
    args = parser.parse_args()
    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    try:
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    except Exception as exc:
        print(f"bench: cannot start chromium ({exc}); run scripts/bootstrap", file=sys.stderr)
        return 1
    try:
        driver.get("about:blank")
        # A script runs as a function body here: publish the module's name on window.
        code = (ROOT / "api" / "static" / "chart.js").read_text()
        driver.execute_script(code + "\nwindow.HeadraceCharts = HeadraceCharts;")
        medians: dict[int, float] = {}
        for n in (100, 10_000, 100_000):
            times = driver.execute_script(TIME_DRAW, n, args.repeat)
            medians[n] = statistics.median(times)
        base = medians[100]
        print(f"{'points':>8} {'median draw ms':>15} {'vs 100 points':>14}")
        for n, ms in medians.items():
            print(f"{n:>8,} {ms:>15.2f} {ms / base if base else float('nan'):>13.1f}x")
    finally:
        driver.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
