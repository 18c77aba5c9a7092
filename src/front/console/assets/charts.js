// Small line charts on a canvas: one or more series over the same points,
// scaled to the largest value, with that value written in the corner.
// Missing points (null: no calls in that interval) break the line.

export function lineChart(canvas, series, { unit = "" } = {}) {
  const ratio = window.devicePixelRatio || 1;
  const width = Number(canvas.getAttribute("width"));
  const height = Number(canvas.getAttribute("height"));
  canvas.style.width = `${width}px`;
  canvas.style.height = `${height}px`;
  canvas.width = width * ratio;
  canvas.height = height * ratio;
  const ctx = canvas.getContext("2d");
  ctx.scale(ratio, ratio);
  ctx.clearRect(0, 0, width, height);

  const values = series.flatMap((s) => s.values).filter((v) => v !== null && v !== undefined);
  const max = Math.max(0, ...values);
  const top = max > 0 ? niceCeiling(max) : 1;
  const pad = 2;
  const plotH = height - 2 * pad;

  ctx.strokeStyle = "#33414f";
  ctx.lineWidth = 1;
  ctx.beginPath();
  ctx.moveTo(0, height - pad + 0.5);
  ctx.lineTo(width, height - pad + 0.5);
  ctx.stroke();

  for (const s of series) {
    const n = s.values.length;
    if (n < 2) continue;
    ctx.strokeStyle = s.color;
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    let drawing = false;
    s.values.forEach((v, i) => {
      if (v === null || v === undefined) {
        drawing = false;
        return;
      }
      const x = (i / (n - 1)) * (width - 1);
      const y = pad + plotH - (v / top) * plotH;
      if (drawing) ctx.lineTo(x, y);
      else ctx.moveTo(x, y);
      drawing = true;
    });
    ctx.stroke();
  }

  ctx.fillStyle = "#9fb3c8";
  ctx.font = "10px system-ui, sans-serif";
  ctx.textBaseline = "top";
  ctx.fillText(max > 0 ? `${format(max)}${unit}` : "idle", 3, 1);
  canvas.setAttribute("aria-label", `max ${format(max)}${unit}`);
}

function niceCeiling(v) {
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function format(v) {
  return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
}
