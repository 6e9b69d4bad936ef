// chart.js: a small time-series line chart on <canvas>, and the histogram maths the
// plugin page needs. No library: a chart is one path per series, redrawn whole on
// every poll, which at a few hundred points costs well under a millisecond.

// GAP_MS is the longest interval between two points that is drawn as a line.
export const GAP_MS = 10e3;

// niceMax picks the top of the y axis so that its four grid steps are 1, 2, 2.5 or 5
// times a power of ten, which keeps the labels short.
function niceMax(v) {
  if (!(v > 0)) return 1;
  const step = v / 4, p = Math.pow(10, Math.floor(Math.log10(step)));
  for (const m of [1, 2, 2.5, 5, 10]) if (step <= m * p) return 4 * m * p;
  return 40 * p;
}

// drawChart draws series = [{label, color, points: [{t, v}]}] (t in ms, v null for a
// gap) over the last windowMs ending at now. fmt formats y-axis values.
export function drawChart(canvas, { series, now, windowMs, fmt = String, minMax = 0 }) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 300, h = canvas.clientHeight || 150;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);

  const t0 = now - windowMs;
  let max = minMax, count = 0;
  for (const s of series) for (const p of s.points) {
    if (p.v != null && isFinite(p.v) && p.t >= t0) { max = Math.max(max, p.v); count++; }
  }
  const top = niceMax(max);
  const padL = 52, padR = 8, padT = 8, padB = 20;
  const pw = w - padL - padR, ph = h - padT - padB;
  const x = (t) => padL + (t - t0) / windowMs * pw;
  const y = (v) => padT + ph - v / top * ph;

  const style = getComputedStyle(canvas);
  const grid = style.getPropertyValue('--chart-grid').trim() || '#e3e7ee';
  const ink = style.getPropertyValue('--chart-ink').trim() || '#5b6575';
  ctx.font = '11px system-ui, sans-serif';
  ctx.lineWidth = 1;
  ctx.strokeStyle = grid;
  ctx.fillStyle = ink;
  ctx.textAlign = 'right';
  ctx.textBaseline = 'middle';
  for (let i = 0; i <= 4; i++) {
    const v = top * i / 4, yy = Math.round(y(v)) + 0.5;
    ctx.beginPath(); ctx.moveTo(padL, yy); ctx.lineTo(w - padR, yy); ctx.stroke();
    ctx.fillText(fmt(v), padL - 6, yy);
  }
  ctx.textAlign = 'center';
  ctx.textBaseline = 'top';
  const stepMs = windowMs >= 240e3 ? 60e3 : windowMs >= 60e3 ? 30e3 : 10e3;
  for (let ago = 0; ago <= windowMs; ago += stepMs) {
    const xx = x(now - ago);
    ctx.fillText(ago === 0 ? 'now' : `-${ago / 1000 >= 60 ? ago / 60e3 + 'm' : ago / 1000 + 's'}`, Math.min(Math.max(xx, padL + 10), w - padR - 12), h - padB + 5);
  }

  ctx.save();
  ctx.beginPath(); ctx.rect(padL, padT - 1, pw, ph + 2); ctx.clip();
  ctx.lineWidth = 1.75;
  ctx.lineJoin = 'round';
  for (const s of series) {
    ctx.strokeStyle = s.color;
    ctx.beginPath();
    let pen = false, lone = null, prevT = -Infinity;
    for (const p of s.points) {
      if (p.v == null || !isFinite(p.v) || p.t < t0 - 10e3) { pen = false; continue; }
      const xx = x(p.t), yy = y(p.v);
      // Polls stop while the page is elsewhere or hidden: do not bridge such a gap.
      if (pen && p.t - prevT <= GAP_MS) { ctx.lineTo(xx, yy); lone = null; } else { ctx.moveTo(xx, yy); lone = [xx, yy]; }
      pen = true;
      prevT = p.t;
    }
    ctx.stroke();
    if (lone) { ctx.fillStyle = s.color; ctx.fillRect(lone[0] - 1.5, lone[1] - 1.5, 3, 3); }
  }
  ctx.restore();

  // What the chart holds, for tests and for assistive technology.
  canvas.dataset.points = String(count);
  canvas.dataset.max = String(max);
  canvas.setAttribute('aria-label', series.map((s) => {
    const last = [...s.points].reverse().find((p) => p.v != null);
    return `${s.label}: ${last ? fmt(last.v) : 'no data'}`;
  }).join(', '));
}

// quantile estimates the q-quantile of a cumulative histogram the way Prometheus'
// histogram_quantile does: linear interpolation inside the bucket holding the rank;
// a rank in the +Inf bucket reports the highest finite bound.
export function quantile(q, le, counts, total) {
  if (!(total > 0) || !le.length) return null;
  const rank = q * total;
  let prevCount = 0, prevBound = 0;
  for (let i = 0; i < le.length; i++) {
    if (counts[i] >= rank) {
      const inBucket = counts[i] - prevCount;
      return prevBound + (le[i] - prevBound) * (inBucket > 0 ? (rank - prevCount) / inBucket : 0);
    }
    prevCount = counts[i];
    prevBound = le[i];
  }
  return le[le.length - 1];
}

// histDelta subtracts an older cumulative histogram from a newer one; a counter that
// went down means the host restarted, and then the newer one stands alone.
export function histDelta(newer, older) {
  if (!older || older.count > newer.count || older.le.length !== newer.le.length) return newer;
  return { le: newer.le, counts: newer.counts.map((c, i) => c - older.counts[i]), count: newer.count - older.count, sum: newer.sum - older.sum };
}
