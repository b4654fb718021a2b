// The page: camera, a video file or images in; the card's preprocessing, the model in
// onnxruntime-web, the card's per-head decoding; top-k labels, FPS and latency out.
// URL parameters: backend=auto|wasm|webgpu|webnn, threads=N, topk=K, source=camera (start at once,
// e.g. in a kiosk window), check=1 (run the check inputs at once), record=N (keep the last N frames
// with what the model made of them, for edgekit's browser tests; off by default).
import { createSession, describeBackend, run } from './engine.js';
import { byHead, decode, describe } from './heads.js';
import { preprocess, rgbOf } from './preprocess.js';
import { runCheck, selfCheck } from './check.js';

const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);
const state = { status: 'loading', info: null, error: null, frames: 0, records: [], last: null };
window.edgekitState = state;

const topk = Number(params.get('topk') || 3);
const record = Number(params.get('record') || 0);
const grabCanvas = document.createElement('canvas');
const grab = grabCanvas.getContext('2d', { willReadFrequently: true });
const view = $('view').getContext('2d');
let card, check, session, info, stopLoop = null;

function fail(message) {
  state.status = 'error';
  state.error = message;
  $('backend').textContent = message;
  $('backend').classList.add('error');
}

async function start() {
  try {
    const manifest = await (await fetch('manifest.json')).json();
    card = await (await fetch('card.json')).json();
    $('title').textContent = `${card.name} · ${card.provenance.precision || 'fp32'}`;
    const want = params.get('backend') || 'auto';
    $('want').value = want;
    check = manifest.check ? await (await fetch('check.json')).json() : null;
    const [h, w] = card.input.size;
    const probe = preprocess([{ data: new Uint8Array(h * w * 3), width: w, height: h }], card.input);
    const verify = check && check.outputs ? (s) => selfCheck(s, card, check) : null;
    ({ session, info } = await createSession(manifest.model.file,
      { want, probe, verify, threads: Number(params.get('threads')) || null }));
    info.precision = card.provenance.precision || 'fp32';
    state.info = info;
    $('backend').textContent = `${describeBackend(info)} · ${info.runtime}`;
    const notices = [];
    if (info.fallback.length) notices.push(`fell back to ${describeBackend(info)}: ${info.fallback.join('; ')}`);
    if (String(info.self_check).startsWith('failed')) notices.push(`self-check on the golden inputs ${info.self_check}`);
    $('notice').textContent = notices.join(' · ');
    modelPanel(manifest);
    for (const el of document.querySelectorAll('button, input')) el.disabled = false;
    for (const el of document.querySelectorAll('.button')) el.setAttribute('aria-disabled', 'false');
    $('check').disabled = !manifest.check;
    state.status = 'ready';
  } catch (e) {
    fail(`could not start the model: ${e.message || e}`);
    return;
  }
  if (params.get('source') === 'camera') startCamera();
  if (params.get('check')) doCheck();
}

function modelPanel(manifest) {
  const rows = [['heads', card.heads.map((h) => `${h.name} (${h.kind})`).join(', ')],
    ['input', `${card.input.size.join('×')} ${card.input.color} ${card.input.layout}`],
    ['file', `${manifest.model.file} (${(manifest.model.bytes / 1e6).toFixed(2)} MB)`],
    ['load', `${info.load_ms.toFixed(0)} ms`]];
  $('model').replaceChildren(...rows.flatMap(([k, v]) => {
    const dt = document.createElement('dt'); dt.textContent = k;
    const dd = document.createElement('dd'); dd.textContent = v;
    return [dt, dd];
  }));
}

/** Pixels of an image, a video or a camera frame at its own resolution (no resampling here). */
function pixels(source, width, height) {
  grabCanvas.width = width;
  grabCanvas.height = height;
  grab.drawImage(source, 0, 0);
  return grab.getImageData(0, 0, width, height);
}

async function infer(imageData) {
  const t0 = performance.now();
  const x = preprocess([rgbOf(imageData)], card.input);
  const t1 = performance.now();
  const out = await run(session, x);
  const t2 = performance.now();
  const heads = byHead(out, session.outputNames, card);
  const result = decode(heads, card, topk)[0];
  return { x, heads, result, pre_ms: t1 - t0, model_ms: t2 - t1 };
}

const times = [];
function show(imageData, r) {
  const now = performance.now();
  times.push(now);
  while (times.length > 30) times.shift();
  const fps = times.length > 1 ? (times.length - 1) / ((now - times[0]) / 1000) : 0;
  const lines = describe(r.result, card, topk);
  const c = $('view');
  c.width = imageData.width;
  c.height = imageData.height;
  view.putImageData(imageData, 0, 0);
  const scale = Math.max(1, imageData.width / 640);
  view.font = `${Math.round(15 * scale)}px system-ui, sans-serif`;
  const overlay = [...lines, `${fps.toFixed(1)} FPS · model ${r.model_ms.toFixed(1)} ms · ${describeBackend(info)}`];
  const lh = Math.round(19 * scale);
  view.fillStyle = 'rgba(0, 0, 0, 0.6)';
  view.fillRect(0, 0, Math.max(...overlay.map((l) => view.measureText(l).width)) + 16 * scale, lh * overlay.length + 10 * scale);
  view.fillStyle = '#fff';
  overlay.forEach((l, i) => view.fillText(l, 8 * scale, lh * (i + 1)));
  $('prediction').replaceChildren(...lines.map((l) => Object.assign(document.createElement('li'), { textContent: l })));
  $('fps').textContent = fps.toFixed(1);
  $('latency').textContent = `${r.model_ms.toFixed(2)} ms`;
  $('pre').textContent = `${r.pre_ms.toFixed(2)} ms`;
  state.frames += 1;
  state.last = { result: r.result, fps, model_ms: r.model_ms, pre_ms: r.pre_ms };
  if (record) {
    state.records.push({ frame: state.frames, png: grabCanvas.toDataURL('image/png'), size: [imageData.width, imageData.height],
      input: toB64(r.x.data), dims: r.x.dims, outputs: Object.fromEntries(Object.entries(r.heads).map(([h, v]) => [h, Array.from(v.data)])),
      result: r.result });
    while (state.records.length > record) state.records.shift();
  }
}

async function playVideo(video) {
  stop();
  let running = true;
  stopLoop = () => { running = false; video.pause(); };
  $('stop').disabled = false;
  await video.play();
  const next = () => new Promise((resolve) => (video.requestVideoFrameCallback
    ? video.requestVideoFrameCallback(() => resolve()) : requestAnimationFrame(() => resolve())));
  while (running && !video.ended) {
    if (video.videoWidth) {
      const img = pixels(video, video.videoWidth, video.videoHeight);
      show(img, await infer(img));
    }
    await next();
  }
}

async function startCamera() {
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
    const video = $('video');
    video.srcObject = stream;
    const done = playVideo(video);
    const previous = stopLoop;
    stopLoop = () => { previous(); stream.getTracks().forEach((t) => t.stop()); };
    await done;
  } catch (e) {
    $('notice').textContent = `camera: ${e.message || e}`;
  }
}

async function showImages(files) {
  stop();
  for (const file of files) {
    const bitmap = await createImageBitmap(file, { colorSpaceConversion: 'none', premultiplyAlpha: 'none', imageOrientation: 'from-image' });
    const img = pixels(bitmap, bitmap.width, bitmap.height);
    show(img, await infer(img));
  }
}

function stop() {
  if (stopLoop) stopLoop();
  stopLoop = null;
  $('stop').disabled = true;
}

async function doCheck() {
  stop();
  $('check-result').textContent = 'checking…';
  try {
    state.check = await runCheck(session, card, info, check);
    $('check-result').replaceChildren(state.check.table);
    delete state.check.table;
  } catch (e) {
    state.check = { error: String(e.message || e) };
    $('check-result').textContent = `check failed: ${state.check.error}`;
  }
}

// -- what edgekit drives from Python (runtime/web.py, benchmarks/web.py) --------------------------------
export function toB64(typed) {
  const bytes = new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength);
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

function fromB64(b64, type) {
  const s = atob(b64);
  const bytes = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) bytes[i] = s.charCodeAt(i);
  const T = { float32: Float32Array, uint8: Uint8Array, int8: Int8Array, float16: Uint16Array }[type];
  return new T(bytes.buffer);
}

window.edgekit = {
  /** A preprocessed batch in, raw outputs per head (card order) out, as base64 float32. */
  async runTensor({ type, b64, dims }) {
    const out = await run(session, { type, data: fromB64(b64, type), dims });
    const heads = byHead(out, session.outputNames, card);
    return Object.fromEntries(Object.entries(heads).map(([h, v]) => [h, { b64: toB64(v.data), width: v.width }]));
  },
  /** Time session.run on one batch in the page (`repeats` runs per sample: a fixed-batch file in chunks):
   *  warm-up, then until both minRuns and minSeconds. */
  async bench({ type, b64, dims, repeats = 1, warmup = 10, minRuns = 50, minSeconds = 1, maxRuns = 5000 }) {
    const x = { type, data: fromB64(b64, type), dims };
    for (let i = 0; i < warmup; i++) await run(session, x);
    const samples = [];
    const t0 = performance.now();
    while (samples.length < maxRuns && (samples.length < minRuns || performance.now() - t0 < minSeconds * 1000)) {
      const t = performance.now();
      for (let r = 0; r < repeats; r++) await run(session, x);
      samples.push(performance.now() - t);
    }
    return { samples_ms: samples, info };
  },
  check: async () => { await doCheck(); return state.check; },
};

$('camera').addEventListener('click', startCamera);
$('stop').addEventListener('click', stop);
$('check').addEventListener('click', doCheck);
$('video-file').addEventListener('change', (e) => {
  if (!e.target.files.length) return;
  const video = $('video');
  video.srcObject = null;
  video.src = URL.createObjectURL(e.target.files[0]);
  playVideo(video);
});
$('image-files').addEventListener('change', (e) => showImages([...e.target.files]));
$('want').addEventListener('change', (e) => {
  params.set('backend', e.target.value);
  location.search = params.toString();
});
start();
