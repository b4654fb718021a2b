// Check mode: the bundle's check inputs (the card's golden inputs, or validation images the exporter
// put in check.json) through this page's own preprocessing and model. It reports the outputs; edgekit
// compares them with native onnxruntime and with the PyTorch reference (edgekit.export.web.check_bundle),
// and this page shows its own relative error against the reference for a person to see.
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

function relError(ref, out) {
  let diff = 0, peak = 1e-12;
  for (let i = 0; i < ref.length; i++) {
    diff = Math.max(diff, Math.abs(ref[i] - out[i]));
    peak = Math.max(peak, Math.abs(ref[i]));
  }
  return diff / peak;
}

export async function runCheck(session, card, info) {
  const check = await (await fetch('check.json')).json();
  const outputs = Object.fromEntries(card.heads.map((h) => [h.name, []]));
  const labels = [];
  for (const b64 of check.inputs) {
    const img = await decodePng(b64);
    const heads = byHead(await run(session, preprocess([rgbOf(img)], card.input)), session.outputNames, card);
    for (const h of card.heads) outputs[h.name].push(Array.from(heads[h.name].data));
    labels.push(decode(heads, card, 1)[0]);
  }
  const rel = {};
  for (const h of card.heads) {
    const ref = (check.outputs || {})[h.name];
    if (ref) rel[h.name] = relError(ref.flat(), outputs[h.name].flat());
  }
  const table = document.createElement('table');
  const header = table.createTHead().insertRow();
  for (const name of ['input', ...card.heads.map((h) => h.name)]) {
    header.appendChild(Object.assign(document.createElement('th'), { textContent: name }));
  }
  check.inputs.forEach((b64, i) => {
    const tr = table.insertRow();
    tr.insertCell().appendChild(Object.assign(new Image(), { alt: `check input ${i}`, src: `data:image/png;base64,${b64}` }));
    for (const h of card.heads) {
      const r = labels[i][h.name];
      tr.insertCell().textContent = 'label' in r ? r.label : 'labels' in r ? r.labels.join(', ') || '-' : r.value.toFixed(2);
    }
  });
  const caption = table.createCaption();
  caption.textContent = `${check.inputs.length} check inputs (${check.source}); relative error vs the reference: `
    + Object.entries(rel).map(([h, e]) => `${h} ${e.toExponential(1)}`).join(', ');
  return { outputs, rel_vs_reference: rel, inputs: check.inputs.length, source: check.source, info, table };
}
