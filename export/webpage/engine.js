// The model in the browser: onnxruntime-web (bundled next to this page, never from a CDN), the
// backend that actually ran, and the fallback from WebGPU / WebNN to WebAssembly with its reason.
// Two builds of onnxruntime-web ship in ort/: the WebAssembly-only one (smaller, starts faster) and
// the one with WebGPU and WebNN ("jsep"); the second is loaded only when a GPU or WebNN is there.

let ort = null;
let build = null;

async function loadOrt(kind) {
  if (ort) return ort;
  const file = kind === 'jsep' ? './ort/ort.min.mjs' : './ort/ort.wasm.min.mjs';
  ort = await import(file);
  build = kind;
  ort.env.wasm.wasmPaths = new URL('./ort/', import.meta.url).href;
  ort.env.wasm.proxy = false;
  return ort;
}

async function webgpuAdapter() {
  if (!('gpu' in navigator)) return [null, 'this browser has no WebGPU (navigator.gpu)'];
  try {
    const adapter = await navigator.gpu.requestAdapter();
    return adapter ? [adapter, null] : [null, 'WebGPU found no adapter (no usable GPU)'];
  } catch (e) {
    return [null, `WebGPU adapter request failed: ${e.message || e}`];
  }
}

/**
 * Create a session. `want`: auto | wasm | webgpu | webnn; `threads`: WebAssembly threads
 * (default: every logical core); `probe`: an input ({type, data, dims}) run once on a GPU / WebNN
 * session before it is kept, since some graphs fail only when they run; `verify(session)`: the
 * self-check's failures on the golden inputs (check.js), [] when it passes: a GPU / WebNN session that
 * misses them is dropped for WebAssembly; on WebAssembly they are reported. Returns {session, info}.
 */
export async function createSession(modelUrl, { want = 'auto', threads = null, probe = null, verify = null } = {}) {
  const t0 = performance.now();
  const response = await fetch(modelUrl);
  if (!response.ok) throw new Error(`cannot load ${modelUrl}: HTTP ${response.status}`);
  const model = new Uint8Array(await response.arrayBuffer());
  const tried = [];
  let providers = ['wasm'];
  if (want === 'webgpu' || want === 'auto') {
    const [adapter, why] = await webgpuAdapter();
    if (adapter) providers = ['webgpu'];
    else tried.push(['webgpu', why]);
  } else if (want === 'webnn') {
    if ('ml' in navigator) providers = [{ name: 'webnn', deviceType: 'gpu' }];
    else tried.push(['webnn', 'this browser has no WebNN (navigator.ml)']);
  } else if (want !== 'wasm') {
    throw new Error(`unknown backend '${want}' (auto, wasm, webgpu, webnn)`);
  }
  await loadOrt(providers[0] === 'wasm' ? 'wasm' : 'jsep');
  ort.env.wasm.numThreads = threads || navigator.hardwareConcurrency || 1;
  let session = null;
  if (providers[0] !== 'wasm') {
    const name = providers[0].name || providers[0];
    let step = 'session creation';
    try {
      session = await ort.InferenceSession.create(model, { executionProviders: providers });
      step = 'first run';
      if (probe) await run(session, probe);
      step = 'self-check';
      const missed = verify ? await verify(session) : [];
      if (missed.length) throw new Error(`wrong outputs on the golden inputs: ${missed.join('; ')}`);
    } catch (e) {
      tried.push([name, `${step} failed: ${String(e.message || e).split('\n')[0]}`]);
      if (session) await session.release();
      session = null;
      providers = ['wasm'];
    }
  }
  let selfCheck = session ? 'passed' : null; // a GPU / WebNN session is kept only when it passed
  if (!session) {
    session = await ort.InferenceSession.create(model, { executionProviders: ['wasm'] });
    const missed = verify ? await verify(session) : [];
    selfCheck = verify ? (missed.length ? `failed: ${missed.join('; ')}` : 'passed') : null;
  }
  const backend = providers[0].name || providers[0];
  const info = {
    backend,
    requested: want,
    threads: ort.env.wasm.numThreads, // after initialization: 1 when the page is not cross-origin isolated
    threads_requested: threads || navigator.hardwareConcurrency || 1,
    cross_origin_isolated: self.crossOriginIsolated === true,
    fallback: tried.map(([b, why]) => `${b}: ${why}`),
    self_check: verify ? selfCheck : 'no golden inputs in this bundle',
    runtime: `onnxruntime-web ${ort.env.versions ? ort.env.versions.web : '?'} (${build === 'jsep' ? 'WebGPU/WebNN/WebAssembly' : 'WebAssembly'} build)`,
    inputs: session.inputNames,
    outputs: session.outputNames,
    model_bytes: model.length,
    load_ms: performance.now() - t0,
  };
  return { session, info };
}

/** One call: {type, data, dims} -> {outputName: ort.Tensor}. */
export async function run(session, x) {
  const feeds = { [session.inputNames[0]]: new ort.Tensor(x.type, x.data, x.dims) };
  return session.run(feeds);
}

/** Text for people: "WebAssembly, 4 threads" / "WebGPU" (+ why it fell back). */
export function describeBackend(info) {
  const names = { wasm: 'WebAssembly', webgpu: 'WebGPU', webnn: 'WebNN' };
  let text = names[info.backend] || info.backend;
  if (info.backend === 'wasm') {
    text += `, ${info.threads} thread${info.threads === 1 ? '' : 's'}`;
    if (!info.cross_origin_isolated) text += ' (page not cross-origin isolated: one thread only)';
  }
  return text;
}

export function ortModule() {
  return ort;
}
