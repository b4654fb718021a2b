"""``speech_commands``: the embedded sound dataset, spoken command words synthesized with eSpeak NG.

No download: the ``espeakng-loader`` wheel ships libespeak-ng and its voice data, driven here
through ctypes (``espeak_Initialize`` in synchronous mode, a synthesis callback collecting the
16-bit samples). Each of the 10 words of Google's Speech Commands core set is spoken by 12 voice
variants (male, female and Klatt voices of British and American English) at 3 speeds and 3
pitches, and resampled to the frontend's rate. A clip (1.0 s) mixes 1-3 different words at random
offsets and gains (the events overlap, as sound events do) over white or pink noise at 5-25 dB SNR;
its labels are the words in it (one multilabel head, ``words``).

Utterances are split by variant before mixing: validation clips are made only of utterances
(voice, speed, pitch) no training clip uses, so a model cannot pass by memorizing recordings.

Everything is seeded (dataset seed 0, fixed like the digits' split): the same clips on every
machine. The synthesized utterances are cached as ``.npz`` in ``$EDGEKIT_CACHE`` (default
``~/.cache/edgekit``), keyed by the word list, variants and the eSpeak NG version.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from edgekit.errors import DataError, DependencyError

SPEECH_COMMANDS = "speech_commands"
WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
VOICES = ("en+m1", "en+m3", "en+m5", "en+m7", "en+f1", "en+f2", "en+f4", "en-us+m2", "en-us+f3", "en-us+m4",
          "en+klatt", "en+klatt3")
SPEEDS = (130, 170, 210)  # words per minute
PITCHES = (30, 50, 70)  # 0-100
CLIP_S = 1.0
CLIPS = {"train": 800, "val": 200}
GENERATOR = 1  # bump when the bank or the mixing changes (part of the cache key)

_ESPEAK_SYNCHRONOUS, _RATE, _PITCH = 2, 1, 3
_lib = None
_chunks: list[np.ndarray] = []


def _espeak():
    """libespeak-ng from the espeakng-loader wheel, initialized once per process: ``(lib, sample rate)``."""
    global _lib
    if _lib is not None:
        return _lib
    try:
        import espeakng_loader
    except ImportError as exc:
        raise DependencyError("the embedded speech_commands data needs espeakng-loader (it ships libespeak-ng): "
                              "pip install 'edgekit[audio]'") from exc
    lib = ctypes.CDLL(espeakng_loader.get_library_path())
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                 ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
    lib.espeak_Info.restype = ctypes.c_char_p
    root = os.path.dirname(espeakng_loader.get_data_path())  # the folder holding espeak-ng-data
    rate = lib.espeak_Initialize(_ESPEAK_SYNCHRONOUS, 0, root.encode(), 0)
    if rate <= 0:
        raise DataError(f"libespeak-ng could not start (espeak_Initialize returned {rate})")
    callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)(
        _collect)
    lib.espeak_SetSynthCallback(callback)
    _lib = (lib, int(rate), callback)  # the callback object must outlive the library's use of it
    return _lib


def _collect(wav, n: int, events) -> int:
    if n > 0:
        _chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
    return 0


def synthesize(text: str, voice: str, speed: int, pitch: int) -> tuple[np.ndarray, int]:
    """``(int16 samples, sample rate)`` of ``text`` spoken by ``voice`` at ``speed`` wpm and ``pitch``."""
    lib, rate, _ = _espeak()
    if lib.espeak_SetVoiceByName(voice.encode()) != 0:
        raise DataError(f"eSpeak NG has no voice '{voice}'")
    lib.espeak_SetParameter(_RATE, int(speed), 0)
    lib.espeak_SetParameter(_PITCH, int(pitch), 0)
    _chunks.clear()
    data = text.encode("utf-8")
    status = lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, 1, None, None)  # 1: espeakCHARS_UTF8
    lib.espeak_Synchronize()
    if status != 0 or not _chunks:
        raise DataError(f"eSpeak NG could not speak '{text}' with {voice} (status {status})")
    return np.concatenate(_chunks).astype(np.int16), rate


def _variants() -> list[tuple[str, int, int]]:
    return [(v, s, p) for v in VOICES for s in SPEEDS for p in PITCHES]


def utterance_bank(cache: Path | None = None) -> dict[str, object]:
    """Every word by every variant: ``{"rate", "words", "variants", "audio": [word][variant] int16}``,
    from the cache when it holds this exact bank."""
    lib, _, _ = _espeak()
    version = lib.espeak_Info(None).decode()
    key = hashlib.sha1(json.dumps([GENERATOR, version, WORDS, _variants()]).encode()).hexdigest()[:12]
    folder = Path(cache or os.environ.get("EDGEKIT_CACHE") or Path.home() / ".cache" / "edgekit")
    path = folder / f"{SPEECH_COMMANDS}-{key}.npz"
    if path.is_file():
        try:
            with np.load(path) as z:
                return {"rate": int(z["rate"]), "audio": _unpack(z["samples"], z["lengths"])}
        except (OSError, ValueError, KeyError):
            pass  # a broken cache is rebuilt
    audio, rate = [], 0
    for word in WORDS:
        row = []
        for voice, speed, pitch in _variants():
            samples, rate = synthesize(word, voice, speed, pitch)
            row.append(samples)
        audio.append(row)
    lengths = np.asarray([[len(a) for a in row] for row in audio], np.int64)
    from edgekit.atomic import write_with

    write_with(path, lambda fh: np.savez_compressed(fh, rate=rate, lengths=lengths,
                                                    samples=np.concatenate([a for row in audio for a in row])))
    return {"rate": rate, "audio": audio}


def _unpack(samples: np.ndarray, lengths: np.ndarray) -> list[list[np.ndarray]]:
    ends = np.cumsum(lengths.reshape(-1))
    flat = np.split(samples, ends[:-1])
    n = lengths.shape[1]
    return [flat[i * n: (i + 1) * n] for i in range(lengths.shape[0])]


def _trim(x: np.ndarray) -> np.ndarray:
    """An utterance without its leading and trailing silence (eSpeak pads words)."""
    loud = np.flatnonzero(np.abs(x) > 0.02 * max(1e-6, np.abs(x).max()))
    return x[loud[0]: loud[-1] + 1] if len(loud) else x


def utterances(sample_rate: int) -> tuple[list[list[np.ndarray]], dict[str, np.ndarray]]:
    """``(audio[word][variant] float32 at sample_rate, {"train", "val": variant ids})``: variants split
    80/20 (seed 0), the same split for every word."""
    from edgekit.runtime.audio_io import resample

    bank = utterance_bank()
    audio = [[_trim(resample(a.astype(np.float32) / 32768.0, bank["rate"], sample_rate)) for a in row]
             for row in bank["audio"]]
    order = np.random.default_rng(0).permutation(len(_variants()))
    cut = int(round(0.8 * len(order)))
    return audio, {"train": np.sort(order[:cut]), "val": np.sort(order[cut:])}


def noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """White or pink (1/f power) noise of unit RMS."""
    white = rng.standard_normal(n)
    if rng.random() < 0.5:
        spec = np.fft.rfft(white)
        spec /= np.sqrt(np.maximum(np.arange(len(spec)), 1.0))
        white = np.fft.irfft(spec, n)
    return (white / (np.sqrt(np.mean(white ** 2)) + 1e-12)).astype(np.float32)


def mix_clip(audio: list[list[np.ndarray]], variants: np.ndarray, length: int, rng: np.random.Generator,
             events: int | None = None) -> tuple[np.ndarray, list[int]]:
    """One clip of ``length`` samples: 1-3 different words (utterances of ``variants``) at random offsets
    and gains over noise at 5-25 dB SNR. Returns ``(clip, word ids in it)``."""
    k = events or int(rng.choice([1, 2, 3], p=[0.4, 0.35, 0.25]))
    words = sorted(rng.choice(len(audio), size=k, replace=False).tolist())
    clip = np.zeros(length, np.float32)
    for w in words:
        u = audio[w][int(rng.choice(variants))][:length]
        start = int(rng.integers(0, length - len(u) + 1))
        gain = 10 ** (rng.uniform(-6.0, 0.0) / 20)
        clip[start: start + len(u)] += gain * u / (np.abs(u).max() + 1e-9)
    signal_rms = np.sqrt(np.mean(clip ** 2)) + 1e-9
    clip += noise(length, rng) * signal_rms / 10 ** (rng.uniform(5.0, 25.0) / 20)
    return (0.5 * clip / (np.abs(clip).max() + 1e-9)).astype(np.float32), words


def speech_clips(sample_rate: int, counts: dict[str, int] | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{split: (clips [N, samples], multi-hot [N, 10])}`` for ``train`` and ``val`` (seed 0)."""
    audio, variants = utterances(sample_rate)
    length = int(round(CLIP_S * sample_rate))
    out = {}
    for i, (split, n) in enumerate((counts or CLIPS).items()):
        rng = np.random.default_rng([0, i])
        clips, targets = np.zeros((n, length), np.float32), np.zeros((n, len(WORDS)), np.float32)
        for j in range(n):
            clips[j], words = mix_clip(audio, variants[split], length, rng)
            targets[j, words] = 1.0
        out[split] = (clips, targets)
    return out


def spoken_sequence(seconds: float, sample_rate: int, seed: int = 0, gap_s: tuple[float, float] = (0.6, 2.0)
                    ) -> tuple[np.ndarray, list[dict[str, object]]]:
    """A long recording (validation voices): single words one after another with pauses, over noise.
    Returns ``(wave, [{"label", "start", "end"} in seconds])`` (for trying time-stamped tagging)."""
    audio, variants = utterances(sample_rate)
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sample_rate))
    wave, events, t = np.zeros(n, np.float32), [], rng.uniform(*gap_s)
    while True:
        w = int(rng.integers(len(WORDS)))
        u = audio[w][int(rng.choice(variants["val"]))]
        start = int(t * sample_rate)
        if start + len(u) > n:
            break
        wave[start: start + len(u)] += 0.5 * u / (np.abs(u).max() + 1e-9)
        events.append({"label": WORDS[w], "start": round(start / sample_rate, 3),
                       "end": round((start + len(u)) / sample_rate, 3)})
        t = (start + len(u)) / sample_rate + rng.uniform(*gap_s)
    wave += 0.02 * noise(n, rng)
    return wave, events
