// Small canvas charts for the headrace dashboard: time series, a marker timeline and a
// reliability diagram.
//
// A chart draws any number of points in time proportional to the points plus the pixel
// width: the points are decimated per pixel column (first, min, max, last of the column),
// which keeps every spike visible, so 10,000 or 100,000 points draw as fast as a few
// hundred. Values that are null or not finite break the line.
"use strict";

const HeadraceCharts = (() => {
  const AXIS = "#6b7385";
  const GRID = "#eceef3";
  const PAD = { left: 52, right: 10, top: 8, bottom: 20 };

  function sizeCanvas(canvas) {
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(50, canvas.clientWidth);
    const height = Math.max(30, canvas.clientHeight);
    if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    return { ctx, width, height };
  }

  function niceStep(span, count) {
    const raw = span / Math.max(1, count);
    const power = Math.pow(10, Math.floor(Math.log10(raw)));
    const unit = raw / power;
    const nice = unit < 1.5 ? 1 : unit < 3 ? 2 : unit < 7 ? 5 : 10;
    return nice * power;
  }

  function formatValue(v, step) {
    if (Math.abs(v) >= 10000) return (v / 1000).toFixed(0) + "k";
    const digits = Math.max(0, Math.min(4, -Math.floor(Math.log10(step))));
    return v.toFixed(digits);
  }

  function formatTime(seconds) {
    const d = new Date(seconds * 1000);
    return d.toTimeString().slice(0, 8);
  }

  // Decimate one series into pixel columns: for each column that holds a value, the
  // first, min, max and last values, and whether a gap (null) came before it.
  function decimate(xs, ys, x0, x1, width) {
    const n = Math.min(xs.length, ys.length);
    const cols = [];
    const scale = (width - 1) / (x1 - x0 || 1);
    let current = null;
    let gap = true;
    for (let i = 0; i < n; i++) {
      const y = ys[i];
      if (y === null || y === undefined || !Number.isFinite(y)) {
        gap = true;
        continue;
      }
      const x = xs[i];
      if (x < x0 || x > x1) continue;
      const col = Math.round((x - x0) * scale);
      if (current === null || col !== current.col) {
        current = { col, first: y, min: y, max: y, last: y, gap };
        cols.push(current);
        gap = false;
      } else {
        if (y < current.min) current.min = y;
        if (y > current.max) current.max = y;
        current.last = y;
      }
    }
    return cols;
  }

  // The top of the value axis without a few outlying columns (a young model's first log
  // losses are many times its later ones and would flatten the rest of the line).
  function robustTop(decimated, lo, hi) {
    const tops = [];
    for (const cols of decimated) for (const c of cols) tops.push(c.max);
    if (tops.length < 20) return hi;
    tops.sort((a, b) => a - b);
    const usual = tops[Math.floor(tops.length * 0.97)];
    return hi - lo > 3 * (usual - lo) ? lo + 1.5 * (usual - lo) : hi;
  }

  class TimeChart {
    // series: [{ key, label, color }]; options: { min, max } clamp the value axis, and
    // { robust: true } lets a few outlying columns leave the top of the chart.
    constructor(canvas, series, options = {}) {
      this.canvas = canvas;
      this.series = series;
      this.options = options;
      this.xs = [];
      this.columns = {};
      this.markers = [];
      this.range = null;
    }

    setData(xs, columns) {
      this.xs = xs;
      this.columns = columns;
    }

    setMarkers(markers) {
      this.markers = markers;
    }

    setRange(x0, x1) {
      this.range = [x0, x1];
    }

    draw() {
      const { ctx, width, height } = sizeCanvas(this.canvas);
      const plotW = width - PAD.left - PAD.right;
      const plotH = height - PAD.top - PAD.bottom;
      const xs = this.xs;
      const n = xs.length;
      this.canvas.dataset.points = String(n);
      this.canvas.dataset.last = n ? String(xs[n - 1]) : "";
      if (n === 0 || plotW < 10 || plotH < 10) {
        ctx.fillStyle = AXIS;
        ctx.font = "12px system-ui, sans-serif";
        ctx.fillText("waiting for data…", PAD.left + 8, PAD.top + 16);
        return;
      }
      let [x0, x1] = this.range || [xs[0], xs[n - 1]];
      if (x1 <= x0) x1 = x0 + 1;
      const decimated = this.series.map((s) =>
        decimate(xs, this.columns[s.key] || [], x0, x1, plotW),
      );
      let lo = Infinity;
      let hi = -Infinity;
      for (const cols of decimated) {
        for (const c of cols) {
          if (c.min < lo) lo = c.min;
          if (c.max > hi) hi = c.max;
        }
      }
      if (this.options.robust) hi = robustTop(decimated, lo, hi);
      if (!Number.isFinite(lo)) {
        lo = 0;
        hi = 1;
      }
      if (hi - lo < 1e-9) {
        hi += 0.5;
        lo -= 0.5;
      }
      const pad = (hi - lo) * 0.08;
      lo -= pad;
      hi += pad;
      if (this.options.min !== undefined) lo = Math.max(lo, this.options.min);
      if (this.options.max !== undefined) hi = Math.min(hi, this.options.max);
      const yOf = (v) => PAD.top + plotH - ((v - lo) / (hi - lo)) * plotH;
      const xOf = (x) => PAD.left + ((x - x0) / (x1 - x0)) * (plotW - 1);

      // Grid and value axis.
      ctx.font = "11px system-ui, sans-serif";
      ctx.lineWidth = 1;
      const step = niceStep(hi - lo, 4);
      ctx.textAlign = "right";
      ctx.textBaseline = "middle";
      for (let v = Math.ceil(lo / step) * step; v <= hi; v += step) {
        const y = Math.round(yOf(v)) + 0.5;
        ctx.strokeStyle = GRID;
        ctx.beginPath();
        ctx.moveTo(PAD.left, y);
        ctx.lineTo(PAD.left + plotW, y);
        ctx.stroke();
        ctx.fillStyle = AXIS;
        ctx.fillText(formatValue(v, step), PAD.left - 6, y);
      }
      // Time axis.
      ctx.textAlign = "center";
      ctx.textBaseline = "top";
      const ticks = Math.max(2, Math.floor(plotW / 110));
      for (let i = 0; i <= ticks; i++) {
        const x = x0 + ((x1 - x0) * i) / ticks;
        ctx.fillStyle = AXIS;
        ctx.fillText(formatTime(x), Math.min(width - 28, Math.max(PAD.left + 24, xOf(x))), PAD.top + plotH + 4);
      }
      // Markers (alerts) under the lines.
      ctx.strokeStyle = "rgba(198, 40, 40, 0.55)";
      ctx.setLineDash([3, 3]);
      for (const m of this.markers) {
        if (m < x0 || m > x1) continue;
        const x = Math.round(xOf(m)) + 0.5;
        ctx.beginPath();
        ctx.moveTo(x, PAD.top);
        ctx.lineTo(x, PAD.top + plotH);
        ctx.stroke();
      }
      ctx.setLineDash([]);
      // Lines: per column, first → min → max → last, so no spike is lost.
      ctx.save();
      ctx.beginPath();
      ctx.rect(PAD.left, PAD.top, plotW, plotH);
      ctx.clip();
      this.series.forEach((s, i) => {
        ctx.strokeStyle = s.color;
        ctx.lineWidth = s.width || 1.5;
        ctx.beginPath();
        for (const c of decimated[i]) {
          const x = PAD.left + c.col;
          if (c.gap) ctx.moveTo(x, yOf(c.first));
          else ctx.lineTo(x, yOf(c.first));
          if (c.min !== c.max) {
            ctx.lineTo(x, yOf(c.min));
            ctx.lineTo(x, yOf(c.max));
          }
          ctx.lineTo(x, yOf(c.last));
        }
        ctx.stroke();
      });
      ctx.restore();
    }
  }

  // Observed positive rate against mean predicted probability, one point per bin of a
  // reliability table, over the diagonal a calibrated model follows. Only bins with at
  // least `minCount` examples are drawn: the rate of a handful of examples is 0 or 1 and
  // says nothing. Both axes share one scale, from 0 to just above the largest point: the
  // store's probabilities are small, and a 0-to-1 square would crowd them into a corner.
  class ReliabilityChart {
    // series: [{ prefix, key, color }]: bin fields `${prefix}count`, `${prefix}mean_predicted`
    // and `${prefix}observed_rate`; `key` names the canvas's data-<key>-points attribute.
    constructor(canvas, series, minCount = 20) {
      this.canvas = canvas;
      this.series = series;
      this.minCount = minCount;
      this.bins = [];
    }

    setData(bins) {
      this.bins = bins || [];
    }

    pointsOf(prefix) {
      const points = [];
      for (const b of this.bins) {
        const x = b[`${prefix}mean_predicted`];
        const y = b[`${prefix}observed_rate`];
        if (b[`${prefix}count`] >= this.minCount && Number.isFinite(x) && Number.isFinite(y)) {
          points.push({ x, y, n: b[`${prefix}count`] });
        }
      }
      return points.sort((a, b) => a.x - b.x);
    }

    draw() {
      const { ctx, width, height } = sizeCanvas(this.canvas);
      const plotW = width - PAD.left - PAD.right;
      const plotH = height - PAD.top - PAD.bottom;
      const sets = this.series.map((s) => ({ ...s, points: this.pointsOf(s.prefix) }));
      let total = 0;
      for (const s of sets) {
        this.canvas.setAttribute(`data-${s.key}-points`, String(s.points.length));
        total += s.points.length;
      }
      this.canvas.dataset.points = String(total);
      if (total === 0 || plotW < 10 || plotH < 10) {
        ctx.fillStyle = AXIS;
        ctx.font = "12px system-ui, sans-serif";
        ctx.fillText("waiting for data…", PAD.left + 8, PAD.top + 16);
        return;
      }
      let top = 0.01;
      for (const s of sets) for (const p of s.points) top = Math.max(top, p.x, p.y);
      const step = niceStep(top * 1.1, 4);
      top = Math.min(1, Math.ceil((top * 1.1) / step) * step);
      const xOf = (v) => PAD.left + (v / top) * plotW;
      const yOf = (v) => PAD.top + plotH - (v / top) * plotH;

      ctx.font = "11px system-ui, sans-serif";
      ctx.lineWidth = 1;
      for (let v = 0; v <= top + step / 2; v += step) {
        const y = Math.round(yOf(v)) + 0.5;
        const x = Math.round(xOf(v)) + 0.5;
        ctx.strokeStyle = GRID;
        ctx.beginPath();
        ctx.moveTo(PAD.left, y);
        ctx.lineTo(PAD.left + plotW, y);
        ctx.moveTo(x, PAD.top);
        ctx.lineTo(x, PAD.top + plotH);
        ctx.stroke();
        ctx.fillStyle = AXIS;
        ctx.textAlign = "right";
        ctx.textBaseline = "middle";
        ctx.fillText(formatValue(v, step), PAD.left - 6, y);
        ctx.textAlign = "center";
        ctx.textBaseline = "top";
        ctx.fillText(formatValue(v, step), Math.min(width - 16, x), PAD.top + plotH + 4);
      }
      ctx.strokeStyle = AXIS;
      ctx.setLineDash([4, 4]);
      ctx.beginPath();
      ctx.moveTo(xOf(0), yOf(0));
      ctx.lineTo(xOf(top), yOf(top));
      ctx.stroke();
      ctx.setLineDash([]);

      ctx.save();
      ctx.beginPath();
      ctx.rect(PAD.left, PAD.top, plotW, plotH);
      ctx.clip();
      for (const s of sets) {
        ctx.strokeStyle = s.color;
        ctx.fillStyle = s.color;
        ctx.lineWidth = 1.5;
        ctx.beginPath();
        s.points.forEach((p, i) => (i ? ctx.lineTo(xOf(p.x), yOf(p.y)) : ctx.moveTo(xOf(p.x), yOf(p.y))));
        ctx.stroke();
        for (const p of s.points) {
          // A bin's marker grows with its examples: a rate from ten examples is mostly noise.
          ctx.beginPath();
          ctx.arc(xOf(p.x), yOf(p.y), Math.min(6, 2 + Math.log10(p.n)), 0, 2 * Math.PI);
          ctx.fill();
        }
      }
      ctx.restore();
    }
  }

  // One row of markers over time, coloured by kind (the drift-alert timeline).
  function drawTimeline(canvas, events, x0, x1, colorOf) {
    const { ctx, width, height } = sizeCanvas(canvas);
    canvas.dataset.alerts = String(events.length);
    const plotW = width - PAD.left - PAD.right;
    ctx.strokeStyle = GRID;
    ctx.beginPath();
    ctx.moveTo(PAD.left, height / 2 - 4);
    ctx.lineTo(PAD.left + plotW, height / 2 - 4);
    ctx.stroke();
    if (x1 <= x0) x1 = x0 + 1;
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillStyle = AXIS;
    ctx.textBaseline = "top";
    ctx.textAlign = "left";
    ctx.fillText(formatTime(x0), PAD.left, height - 14);
    ctx.textAlign = "right";
    ctx.fillText(formatTime(x1), PAD.left + plotW, height - 14);
    for (const e of events) {
      if (e.x < x0 || e.x > x1) continue;
      const x = PAD.left + ((e.x - x0) / (x1 - x0)) * (plotW - 1);
      ctx.fillStyle = colorOf(e);
      ctx.fillRect(Math.round(x) - 1, 4, 3, height / 2 - 8);
    }
  }

  return { TimeChart, ReliabilityChart, drawTimeline, formatTime, decimate };
})();
