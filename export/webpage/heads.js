// Raw outputs -> per-head results, as edgekit's Python Predictor.decode does (runtime/predictor.py):
// classification: softmax (unless the file already outputs probabilities) and the top-k labels;
// multilabel: sigmoid and the labels at or over the head's threshold; regression: the value
// (any target scaling is folded into the model's last layer, so the output is already in units).

/** Tensor data as a Float32Array (float16 outputs arrive as Uint16Array bits in older browsers). */
export function asFloat32(tensor) {
  const d = tensor.data;
  if (d instanceof Float32Array) return d;
  if (tensor.type === 'float16' && d instanceof Uint16Array) return Float32Array.from(d, halfToFloat);
  return Float32Array.from(d, Number);
}

function halfToFloat(h) {
  const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e === 0) return s * 2 ** -14 * (m / 1024);
  if (e === 31) return m ? NaN : s * Infinity;
  return s * 2 ** (e - 15) * (1 + m / 1024);
}

/** {head: Float32Array [n * width]} -> the same, keyed by head, in the card's order. */
export function byHead(outputs, outputNames, card) {
  const heads = card.heads.map((h) => h.name);
  const named = heads.every((h) => outputNames.includes(h));
  const out = {};
  heads.forEach((h, i) => {
    const t = outputs[named ? h : outputNames[i]];
    out[h] = { data: asFloat32(t), width: t.dims.slice(1).reduce((a, b) => a * b, 1) };
  });
  return out;
}

function softmax(row) {
  let m = -Infinity;
  for (const v of row) m = Math.max(m, v);
  const e = row.map((v) => Math.exp(v - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

/** One result per input: {head: {label, score, top} | {labels, scores} | {value}}. */
export function decode(heads, card, topk = 5) {
  const n = heads[card.heads[0].name].data.length / heads[card.heads[0].name].width;
  const activated = Boolean(card.provenance && card.provenance.outputs_activated);
  const results = Array.from({ length: n }, () => ({}));
  for (const head of card.heads) {
    const { data, width } = heads[head.name];
    for (let i = 0; i < n; i++) {
      const row = Array.from(data.subarray(i * width, (i + 1) * width));
      if (head.kind === 'classification') {
        const probs = activated ? row : softmax(row);
        const order = probs.map((p, j) => j).sort((a, b) => probs[b] - probs[a] || a - b).slice(0, Math.min(topk, width));
        const top = order.map((j) => [head.classes[j], probs[j]]);
        results[i][head.name] = { label: top[0][0], score: top[0][1], top };
      } else if (head.kind === 'multilabel') {
        const probs = activated ? row : row.map((v) => 1 / (1 + Math.exp(-v)));
        const scores = Object.fromEntries(head.classes.map((c, j) => [c, probs[j]]));
        results[i][head.name] = { labels: head.classes.filter((c) => scores[c] >= head.threshold), scores };
      } else {
        results[i][head.name] = { value: row[0] };
      }
    }
  }
  return results;
}

/** Short text lines for one result (what the overlay and the side panel show). */
export function describe(result, card, topk = 3) {
  const lines = [];
  for (const head of card.heads) {
    const r = result[head.name];
    if (!r) continue;
    if ('top' in r) {
      lines.push(`${head.name}: ` + r.top.slice(0, topk).map(([c, p]) => `${c} ${(100 * p).toFixed(1)}%`).join(', '));
    } else if ('labels' in r) {
      lines.push(`${head.name}: ${r.labels.length ? r.labels.join(', ') : '-'}`);
    } else {
      lines.push(`${head.name}: ${r.value.toFixed(2)}`);
    }
  }
  return lines;
}
