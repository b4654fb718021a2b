// Image -> model input, driven by the model card, step for step as edgekit's Python runtime
// (runtime/preprocess.py): short side to floor(size / crop_pct), centre crop, [0, 1], mean/std,
// colour order, layout, and integer quantization for integer inputs. Downscaling goes through
// OpenCV's area filter (a big reduction first to 2x or 4x the target with a linear filter),
// upscaling through the card's interpolation, with cv2's arithmetic (resize.js).
import { resize, rint } from './resize.js';

const f32 = Math.fround;

/** Drop the alpha channel of canvas pixels: RGBA -> RGB. */
export function rgbOf(imageData) {
  const { data, width, height } = imageData;
  const out = new Uint8Array(width * height * 3);
  for (let i = 0, j = 0; i < data.length; i += 4, j += 3) {
    out[j] = data[i]; out[j + 1] = data[i + 1]; out[j + 2] = data[i + 2];
  }
  return { data: out, width, height };
}

function shrink(img, nh, nw, interpolation) {
  const h = img.height;
  if (nh >= h) return resize(img, nw, nh, interpolation);
  const factor = h / nh;
  if (factor >= 2) {
    const m = factor >= 4 ? 4 : 2;
    if (m * nh < h) img = resize(img, m * nw, m * nh, 'bilinear');
  }
  return resize(img, nw, nh, 'area');
}

/** Resize and centre-crop an RGB image to the card's input size (timm's eval transform). */
export function resizeCrop(img, input) {
  const [th, tw] = input.size;
  const { width: w, height: h } = img;
  if (h === th && w === tw) return img;
  let nh, nw;
  if (th === tw) {
    const short = Math.floor(Math.min(th, tw) / input.crop_pct);
    // torchvision's rule: the long side is truncated, not rounded
    [nh, nw] = h <= w ? [short, Math.trunc(short * w / h)] : [Math.trunc(short * h / w), short];
  } else {
    const scale = Math.max(th / h, tw / w) / input.crop_pct;
    [nh, nw] = [Math.max(th, rint(h * scale)), Math.max(tw, rint(w * scale))];
  }
  if (nh !== h || nw !== w) img = shrink(img, nh, nw, input.interpolation);
  const top = rint((nh - th) / 2.0), left = rint((nw - tw) / 2.0);
  const out = new Uint8Array(th * tw * 3);
  for (let y = 0; y < th; y++) {
    const s = ((top + y) * img.width + left) * 3;
    out.set(img.data.subarray(s, s + tw * 3), y * tw * 3);
  }
  return { data: out, width: tw, height: th };
}

const INT_RANGE = { int8: [-128, 127], uint8: [0, 255], int16: [-32768, 32767] };

/** RGB images (already at the input size) -> {type, data, dims} in the card's layout and dtype. */
export function toTensor(images, input) {
  const [h, w] = input.size;
  const n = images.length, plane = h * w;
  const mean = input.mean.map(f32), std = input.std.map(f32);
  const order = input.color === 'BGR' ? [2, 1, 0] : [0, 1, 2];
  const nchw = input.layout === 'NCHW';
  const x = new Float32Array(n * plane * 3);
  images.forEach((img, b) => {
    const src = img.data;
    for (let p = 0; p < plane; p++) {
      for (let c = 0; c < 3; c++) {
        const v = f32(f32(f32(src[p * 3 + order[c]] / 255) - mean[c]) / std[c]);
        x[nchw ? (b * 3 + c) * plane + p : (b * plane + p) * 3 + c] = v;
      }
    }
  });
  const dims = nchw ? [n, 3, h, w] : [n, h, w, 3];
  if (!input.quant) return { type: 'float32', data: x, dims };
  const [lo, hi] = INT_RANGE[input.dtype] || [-128, 127];
  const scale = f32(input.quant.scale), zero = input.quant.zero_point;
  const q = input.dtype === 'uint8' ? new Uint8Array(x.length) : new Int8Array(x.length);
  for (let i = 0; i < x.length; i++) q[i] = Math.min(hi, Math.max(lo, rint(f32(x[i] / scale)) + zero));
  return { type: input.dtype, data: q, dims };
}

/** Frames (RGB, any size) -> the model's input tensor. */
export function preprocess(frames, input) {
  if (input.frames) throw new Error('clip models (several frames per input) are not supported by the web page');
  return toTensor(frames.map((f) => resizeCrop(f, input)), input);
}
