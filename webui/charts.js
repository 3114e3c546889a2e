// Hand-drawn canvas line charts for live throughput, IOPS and latency.

/** A two-series (read/write) rolling line chart on a canvas. */
export class LineChart {
  constructor(canvas, { format, points = 120 }) {
    this.canvas = canvas; this.format = format; this.points = points;
    this.read = []; this.write = [];
  }
  push(r, w) {
    this.read.push(r); this.write.push(w);
    if (this.read.length > this.points) { this.read.shift(); this.write.shift(); }
    this.draw();
  }
  setData(read, write) { this.read = read.slice(-this.points); this.write = write.slice(-this.points); this.draw(); }
  draw() {
    const c = this.canvas;
    if (!c.isConnected) return;
    const dpr = window.devicePixelRatio || 1;
    const w = c.clientWidth, hgt = c.clientHeight;
    if (w === 0 || hgt === 0) return;
    if (c.width !== Math.round(w * dpr) || c.height !== Math.round(hgt * dpr)) {
      c.width = Math.round(w * dpr); c.height = Math.round(hgt * dpr);
    }
    const g = c.getContext('2d');
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, hgt);
    const css = getComputedStyle(document.documentElement);
    const padL = 74, padR = 8, padT = 8, padB = 18;
    const all = this.read.concat(this.write).filter(Number.isFinite);
    let max = Math.max(1e-9, ...all);
    max = niceMax(max);
    // grid
    g.strokeStyle = '#e7ebf0'; g.fillStyle = '#6b7785'; g.lineWidth = 1;
    g.font = '11px system-ui, sans-serif'; g.textAlign = 'right'; g.textBaseline = 'middle';
    for (let i = 0; i <= 4; i++) {
      const y = padT + ((hgt - padT - padB) * i) / 4;
      g.beginPath(); g.moveTo(padL, Math.round(y) + 0.5); g.lineTo(w - padR, Math.round(y) + 0.5); g.stroke();
      g.fillText(this.format(max * (1 - i / 4)), padL - 6, y);
    }
    g.textAlign = 'left'; g.textBaseline = 'alphabetic';
    g.fillText(`last ${this.points} s`, padL, hgt - 3);
    const series = [[this.read, css.getPropertyValue('--read').trim() || '#1f6feb'], [this.write, css.getPropertyValue('--write').trim() || '#e8590c']];
    for (const [data, color] of series) {
      if (data.length < 2) continue;
      const step = (w - padL - padR) / (this.points - 1);
      const x0 = padL + (this.points - data.length) * step;
      g.beginPath();
      data.forEach((v, i) => {
        const x = x0 + i * step;
        const y = padT + (hgt - padT - padB) * (1 - (Number.isFinite(v) ? v : 0) / max);
        if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
      });
      g.strokeStyle = color; g.lineWidth = 2; g.lineJoin = 'round'; g.stroke();
    }
  }
}

function niceMax(v) {
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}
