// OpenCV's cv::resize for 8-bit images (OpenCV 4.x, as opencv-python runs it on x86), in plain JS:
// the web page resizes camera frames and images exactly as edgekit's Python runtime does
// (runtime/preprocess.py), so the browser and the native runtime feed the model the same tensor.
// Linear (fixed point, the SIMD rounding), area (float weights; integer factors summed) and
// nearest reproduce cv2 bit for bit; cubic uses OpenCV's fixed-point weights and can differ from it
// by one grey level on some pixels (see tests/export/test_web_resize.py for the measured figures).
// Images are {data: Uint8Array, width, height} with `cn` interleaved channels.

const COEF_BITS = 11;
const COEF_SCALE = 1 << COEF_BITS; // 2048
const f32 = Math.fround;

/** Round half to even (cvRound / np.rint). */
export function rint(x) {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

const u8 = (v) => (v < 0 ? 0 : v > 255 ? 255 : v);
const clampIndex = (i, n) => (i < 0 ? 0 : i >= n ? n - 1 : i);

/** cv2.resize(src, (dw, dh), interpolation) for 8-bit images with `cn` channels. */
export function resize(src, dw, dh, interpolation, cn = 3) {
  const { width: w, height: h } = src;
  if (dw === w && dh === h) return { data: src.data.slice(), width: w, height: h };
  const invX = dw / w, invY = dh / h;
  const scaleX = 1 / invX, scaleY = 1 / invY;
  const ix = Math.round(scaleX), iy = Math.round(scaleY);
  const areaFast = Math.abs(scaleX - ix) < Number.EPSILON && Math.abs(scaleY - iy) < Number.EPSILON;
  if (interpolation === 'nearest') return nearest(src, dw, dh, cn);
  if (interpolation === 'bilinear' && areaFast && ix === 2 && iy === 2) interpolation = 'area';
  if (interpolation === 'area' && scaleX >= 1 && scaleY >= 1) {
    return areaFast ? areaInteger(src, dw, dh, ix, iy, cn) : areaWeighted(src, dw, dh, scaleX, scaleY, cn);
  }
  if (interpolation === 'bilinear' || interpolation === 'area') {
    return linear(src, dw, dh, cn, interpolation === 'area');
  }
  if (interpolation === 'bicubic') return cubic(src, dw, dh, cn);
  throw new Error(`interpolation '${interpolation}' is not supported by the web page (bilinear, bicubic, area, nearest)`);
}

function nearest(src, dw, dh, cn) {
  const { data, width: w, height: h } = src;
  const out = new Uint8Array(dw * dh * cn);
  const fx = 1 / (dw / w), fy = 1 / (dh / h);
  const xo = new Int32Array(dw);
  for (let x = 0; x < dw; x++) xo[x] = Math.min(Math.floor(x * fx), w - 1) * cn;
  for (let y = 0; y < dh; y++) {
    const row = Math.min(Math.floor(y * fy), h - 1) * w * cn;
    for (let x = 0; x < dw; x++) for (let c = 0; c < cn; c++) out[(y * dw + x) * cn + c] = data[row + xo[x] + c];
  }
  return { data: out, width: dw, height: dh };
}

/** Integer factors: the mean of each block. 2x2 rounds half up (OpenCV's SIMD path), others half to even. */
function areaInteger(src, dw, dh, sx, sy, cn) {
  const { data, width: w } = src;
  const out = new Uint8Array(dw * dh * cn);
  const scale = f32(1 / (sx * sy));
  for (let y = 0; y < dh; y++) {
    for (let x = 0; x < dw; x++) {
      for (let c = 0; c < cn; c++) {
        let sum = 0;
        for (let j = 0; j < sy; j++) {
          const base = ((y * sy + j) * w + x * sx) * cn + c;
          for (let i = 0; i < sx; i++) sum += data[base + i * cn];
        }
        out[(y * dw + x) * cn + c] = sx === 2 && sy === 2 ? (sum + 2) >> 2 : u8(rint(f32(sum * scale)));
      }
    }
  }
  return { data: out, width: dw, height: dh };
}

function areaTable(ssize, dsize, scale) {
  const tab = [];
  for (let dx = 0; dx < dsize; dx++) {
    const fsx1 = dx * scale, fsx2 = fsx1 + scale;
    const cell = Math.min(scale, ssize - fsx1);
    let sx1 = Math.ceil(fsx1), sx2 = Math.floor(fsx2);
    sx2 = Math.min(sx2, ssize - 1);
    sx1 = Math.min(sx1, sx2);
    if (sx1 - fsx1 > 1e-3) tab.push([dx, sx1 - 1, f32((sx1 - fsx1) / cell)]);
    for (let sx = sx1; sx < sx2; sx++) tab.push([dx, sx, f32(1.0 / cell)]);
    if (fsx2 - sx2 > 1e-3) tab.push([dx, sx2, f32(Math.min(Math.min(fsx2 - sx2, 1), cell) / cell)]);
  }
  return tab;
}

/** Non-integer downscaling: each output pixel is the area-weighted mean of the source pixels it covers. */
function areaWeighted(src, dw, dh, scaleX, scaleY, cn) {
  const { data, width: w, height: h } = src;
  const xtab = areaTable(w, dw, scaleX), ytab = areaTable(h, dh, scaleY);
  const width = dw * cn;
  const out = new Uint8Array(width * dh);
  const buf = new Float32Array(width), sum = new Float32Array(width);
  let prev = ytab[0][0];
  for (const [dy, sy, beta] of ytab) {
    buf.fill(0);
    const row = sy * w * cn;
    for (const [dx, sx, alpha] of xtab) {
      for (let c = 0; c < cn; c++) {
        const i = dx * cn + c;
        buf[i] = f32(buf[i] + f32(data[row + sx * cn + c] * alpha));
      }
    }
    if (dy !== prev) {
      for (let i = 0; i < width; i++) {
        out[prev * width + i] = u8(rint(sum[i]));
        sum[i] = f32(beta * buf[i]);
      }
      prev = dy;
    } else {
      for (let i = 0; i < width; i++) sum[i] = f32(sum[i] + f32(beta * buf[i]));
    }
  }
  for (let i = 0; i < width; i++) out[prev * width + i] = u8(rint(sum[i]));
  return { data: out, width: dw, height: dh };
}

/** Source index and the fixed-point weights of one axis (OpenCV's `resize` tables). */
function linearTable(ssize, dsize, clamp, areaMode) {
  const inv = dsize / ssize, scale = 1 / inv;
  const ofs = new Int32Array(dsize), w0 = new Int32Array(dsize), w1 = new Int32Array(dsize);
  for (let d = 0; d < dsize; d++) {
    let fx, sx;
    if (!areaMode) {
      fx = f32((d + 0.5) * scale - 0.5);
      sx = Math.floor(fx);
      fx = f32(fx - sx);
    } else {
      sx = Math.floor(d * scale);
      fx = f32((d + 1) - (sx + 1) * inv);
      fx = fx <= 0 ? 0 : f32(fx - Math.floor(fx));
    }
    if (clamp) {
      if (sx < 0) { fx = 0; sx = 0; }
      if (sx >= ssize - 1) { fx = 0; sx = ssize - 1; }
    }
    ofs[d] = sx;
    w0[d] = rint(f32(f32(1 - fx) * COEF_SCALE));
    w1[d] = rint(f32(fx * COEF_SCALE));
  }
  return { ofs, w0, w1 };
}

/** Bilinear: horizontal pass in integers, vertical pass with OpenCV's SIMD rounding. */
function linear(src, dw, dh, cn, areaMode) {
  const { data, width: w, height: h } = src;
  const xt = linearTable(w, dw, true, areaMode), yt = linearTable(h, dh, false, areaMode);
  const width = dw * cn;
  const rows = new Map(); // source row -> horizontally resized row (Int32Array)
  const hrow = (y) => {
    let r = rows.get(y);
    if (r === undefined) {
      r = new Int32Array(width);
      const base = y * w * cn;
      for (let x = 0; x < dw; x++) {
        const s0 = base + xt.ofs[x] * cn, s1 = base + Math.min(xt.ofs[x] + 1, w - 1) * cn;
        for (let c = 0; c < cn; c++) r[x * cn + c] = data[s0 + c] * xt.w0[x] + data[s1 + c] * xt.w1[x];
      }
      rows.set(y, r);
      if (rows.size > 4) rows.delete(rows.keys().next().value);
    }
    return r;
  };
  const out = new Uint8Array(width * dh);
  for (let y = 0; y < dh; y++) {
    const r0 = hrow(clampIndex(yt.ofs[y], h)), r1 = hrow(clampIndex(yt.ofs[y] + 1, h));
    const b0 = yt.w0[y], b1 = yt.w1[y];
    const o = y * width;
    for (let i = 0; i < width; i++) {
      const v = (((r0[i] >> 4) * b0) >> 16) + (((r1[i] >> 4) * b1) >> 16);
      out[o + i] = u8((v + 2) >> 2);
    }
  }
  return { data: out, width: dw, height: dh };
}

function cubicWeights(x) {
  const A = -0.75;
  const c0 = f32(f32(f32(f32(f32(A * f32(x + 1)) - f32(5 * A)) * f32(x + 1)) + f32(8 * A)) * f32(x + 1)) - f32(4 * A);
  const c1 = f32(f32(f32(f32(f32((A + 2) * x) - (A + 3)) * x) * x) + 1);
  const y = f32(1 - x);
  const c2 = f32(f32(f32(f32(f32((A + 2) * y) - (A + 3)) * y) * y) + 1);
  const c3 = f32(f32(f32(1 - f32(c0)) - c1) - c2);
  const q = [f32(c0), c1, c2, c3].map((c) => rint(f32(c * COEF_SCALE)));
  return q;
}

function cubicTable(ssize, dsize) {
  const scale = 1 / (dsize / ssize);
  const ofs = new Int32Array(dsize), wts = [];
  for (let d = 0; d < dsize; d++) {
    let fx = f32((d + 0.5) * scale - 0.5);
    const sx = Math.floor(fx);
    fx = f32(fx - sx);
    ofs[d] = sx;
    wts.push(cubicWeights(fx));
  }
  return { ofs, wts };
}

/** Bicubic (a = -0.75) with OpenCV's 11-bit weights; borders replicate. */
function cubic(src, dw, dh, cn) {
  const { data, width: w, height: h } = src;
  const xt = cubicTable(w, dw), yt = cubicTable(h, dh);
  for (const q of yt.wts) q[3] += COEF_SCALE - (q[0] + q[1] + q[2] + q[3]);
  const width = dw * cn;
  const hrows = new Array(h);
  const hrow = (y) => {
    if (hrows[y] === undefined) {
      const r = new Float64Array(width);
      const base = y * w * cn;
      for (let x = 0; x < dw; x++) {
        const q = xt.wts[x];
        for (let c = 0; c < cn; c++) {
          let v = 0;
          for (let k = 0; k < 4; k++) v += data[base + clampIndex(xt.ofs[x] + k - 1, w) * cn + c] * q[k];
          r[x * cn + c] = v;
        }
      }
      hrows[y] = r;
    }
    return hrows[y];
  };
  const out = new Uint8Array(width * dh);
  for (let y = 0; y < dh; y++) {
    const q = yt.wts[y];
    const rs = [0, 1, 2, 3].map((k) => hrow(clampIndex(yt.ofs[y] + k - 1, h)));
    for (let i = 0; i < width; i++) {
      const v = rs[0][i] * q[0] + rs[1][i] * q[1] + rs[2][i] * q[2] + rs[3][i] * q[3];
      out[y * width + i] = u8(Math.floor((v + (1 << 21)) / (1 << 22)));
    }
  }
  return { data: out, width: dw, height: dh };
}
