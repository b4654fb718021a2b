// Check mode and the start-up self-check: the bundle's golden inputs (check.json: PNGs at the model's
// input size, PyTorch's outputs on them, and the gate of the bundle's precision) through this page's
// own decoding, preprocessing and model.
// - runCheck reports the outputs; edgekit compares them with native onnxruntime and PyTorch
//   (edgekit.export.web.check_bundle) and the page shows them for a person to see.
// - judge applies the gate's thresholds edgekit uses (export/gates.py: relative error for FP32, SQNR
//   and top-1 agreement for FP16 / INT8) to the page's outputs against PyTorch's: engine.js drops a
//   WebGPU / WebNN session that misses them (a silently wrong GPU kernel) and falls back to WebAssembly.
import { run } from './engine.js';
import { byHead, decode } from './heads.js';
import { preprocess, rgbOf } from './preprocess.js';

async function decodePng(b64) {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const bitmap = await createImageBitmap(new Blob([bytes], { type: 'image/png' }),
    { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  return ctx.getImageData(0, 0, bitmap.width, bitmap.height);
}

/** The page's raw outputs ({head: [[...] per input]}) and decoded results on the check inputs. */
export async function checkOutputs(session, card, check) {
  const outputs = Object.fromEntries(card.heads.map((h) => [h.name, []]));
  const results = [];
  for (const b64 of check.inputs) {
    const img = await decodePng(b64);
    const heads = byHead(await run(session, preprocess([rgbOf(img)], card.input)), session.outputNames, card);
    for (const h of card.heads) outputs[h.name].push(Array.from(heads[h.name].data));
    results.push(decode(heads, card, 1)[0]);
  }
  return { outputs, results };
}

function softmax(row) {
  const m = Math.max(...row);
  const e = row.map((v) => Math.exp(v - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

const argmax = (row) => row.reduce((best, v, i) => (v > row[best] ? i : best), 0);

/** Per head: relative error, SQNR (dB; null when equal) and top-1 agreement against the reference, as
 *  export/verify.py's compare_outputs computes them; and the gate's failures (one line each). */
export function judge(card, check, outputs) {
  const stats = {};
  const failures = [];
  const gate = check.gate || {};
  for (const head of card.heads) {
    let ref = (check.outputs || {})[head.name];
    if (!ref) continue;
    if (card.provenance.outputs_activated && head.kind === 'classification') ref = ref.map(softmax);
    const out = outputs[head.name];
    let diff = 0, peak = 1e-12, signal = 0, noise = 0, agree = 0;
    ref.forEach((row, i) => {
      row.forEach((a, j) => {
        const d = out[i][j] - a;
        diff = Math.max(diff, Math.abs(d));
        peak = Math.max(peak, Math.abs(a));
        signal += a * a;
        noise += d * d;
      });
      agree += argmax(row) === argmax(out[i]) ? 1 : 0;
    });
    const s = { rel: diff / peak, sqnr_db: noise > 0 ? 10 * Math.log10(signal / noise) : null };
    if (head.kind === 'classification') s.top1_agreement = agree / ref.length;
    stats[head.name] = s;
    if (gate.max_rel != null && !(s.rel <= gate.max_rel)) {
      failures.push(`${head.name}: relative error ${s.rel.toExponential(1)} > ${gate.max_rel}`);
    }
    if (gate.min_sqnr_db != null && s.sqnr_db !== null && !(s.sqnr_db >= gate.min_sqnr_db)) {
      failures.push(`${head.name}: SQNR ${s.sqnr_db.toFixed(1)} dB < ${gate.min_sqnr_db} dB`);
    }
    if (gate.min_agreement != null && s.top1_agreement != null && !(s.top1_agreement >= gate.min_agreement)) {
      failures.push(`${head.name}: top-1 agreement ${(100 * s.top1_agreement).toFixed(0)}% < ${100 * gate.min_agreement}%`);
    }
  }
  return { stats, failures };
}

/** The start-up self-check: the gate's failures on the golden inputs ([] when it passes). */
export async function selfCheck(session, card, check) {
  const { outputs } = await checkOutputs(session, card, check);
  return judge(card, check, outputs).failures;
}

/** Check mode: outputs for edgekit, and a table (input, label per head) for a person. */
export async function runCheck(session, card, info, check) {
  const { outputs, results } = await checkOutputs(session, card, check);
  const { stats, failures } = judge(card, check, outputs);
  const table = document.createElement('table');
  const header = table.createTHead().insertRow();
  for (const name of ['input', ...card.heads.map((h) => h.name)]) {
    header.appendChild(Object.assign(document.createElement('th'), { textContent: name }));
  }
  check.inputs.forEach((b64, i) => {
    const tr = table.insertRow();
    tr.insertCell().appendChild(Object.assign(new Image(), { alt: `check input ${i}`, src: `data:image/png;base64,${b64}` }));
    for (const h of card.heads) {
      const r = results[i][h.name];
      tr.insertCell().textContent = 'label' in r ? r.label : 'labels' in r ? r.labels.join(', ') || '-' : r.value.toFixed(2);
    }
  });
  const caption = table.createCaption();
  caption.textContent = `${check.inputs.length} golden inputs; against PyTorch: `
    + Object.entries(stats).map(([h, s]) => `${h} relative error ${s.rel.toExponential(1)}`).join(', ')
    + (failures.length ? ` · misses the gate: ${failures.join('; ')}` : ' · within the gate');
  return { outputs, stats, failures, inputs: check.inputs.length, source: check.source, info, table };
}
