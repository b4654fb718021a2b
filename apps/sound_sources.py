"""Sound sources for the audio demo: a microphone, or a sound file played as a stream.

Both yield :class:`Chunk` (index, time in seconds, mono float32 samples at the model's rate) and
never hang: a microphone that cannot be opened (no PortAudio library, no input device, a busy one)
is a one-line :class:`~edgekit.apps.capture.CaptureError` that suggests a file instead; a microphone
that stops delivering ends the run after ``timeout`` seconds with a message; a file simply ends.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekit.apps.capture import CaptureError
from edgekit.errors import option
from edgekit.runtime.audio_io import read_audio


@dataclass
class Chunk:
    index: int
    time: float  # seconds from the start of the stream
    samples: np.ndarray  # mono float32 at the source's sample rate


class FileStream:
    """A sound file cut into chunks of ``block`` samples; ``realtime`` paces them at the sound's own rate."""

    live = False

    def __init__(self, path: str | Path, sample_rate: int, block: int, realtime: bool = False) -> None:
        self.path, self.sample_rate, self.block, self.realtime = Path(path), sample_rate, block, realtime
        self.name = str(path)
        self.wave = read_audio(path, sample_rate)

    @property
    def seconds(self) -> float:
        return len(self.wave) / self.sample_rate

    def __iter__(self) -> Iterator[Chunk]:
        t0 = time.monotonic()
        for i, start in enumerate(range(0, len(self.wave), self.block)):
            if self.realtime:
                wait = start / self.sample_rate - (time.monotonic() - t0)
                if wait > 0:
                    time.sleep(wait)
            yield Chunk(i, start / self.sample_rate, self.wave[start: start + self.block])

    def close(self) -> None:
        pass


class MicSource:
    """The default (or ``device``) input device through ``sounddevice``, resampled by PortAudio to ``sample_rate``."""

    live = True

    def __init__(self, sample_rate: int, block: int, device: int | str | None = None, timeout: float = 2.0) -> None:
        self.sample_rate, self.block, self.timeout = sample_rate, block, timeout
        self.name = f"microphone {device if device is not None else '(default)'}"
        self._queue: queue.Queue[np.ndarray] = queue.Queue(maxsize=256)
        self.overflows = 0
        hint = f"give {option('source')} a sound file (.wav, .flac, .ogg) instead"
        try:
            import sounddevice as sd
        except (ImportError, OSError) as exc:  # sounddevice raises OSError when the PortAudio library is missing
            raise CaptureError(f"no microphone: {exc} (install PortAudio, e.g. apt install libportaudio2, and "
                               f"pip install sounddevice); {hint}") from None
        try:
            self._stream = sd.InputStream(samplerate=sample_rate, blocksize=block, channels=1, dtype="float32",
                                          device=device, callback=self._push)
            self._stream.start()
        except Exception as exc:  # noqa: BLE001 - PortAudioError, ValueError (no such device) alike
            raise CaptureError(f"cannot open {self.name}: {str(exc).strip().splitlines()[0]}; {hint}") from None

    def _push(self, data, frames, time_info, status) -> None:  # PortAudio's thread
        if status:
            self.overflows += 1
        try:
            self._queue.put_nowait(data[:, 0].copy())
        except queue.Full:
            self.overflows += 1

    def __iter__(self) -> Iterator[Chunk]:
        index, start = 0, 0
        while True:
            try:
                samples = self._queue.get(timeout=self.timeout)
            except queue.Empty:
                raise CaptureError(f"{self.name} stopped delivering sound ({self.timeout:.0f} s without samples)") \
                    from None
            yield Chunk(index, start / self.sample_rate, samples)
            index, start = index + 1, start + len(samples)

    def close(self) -> None:
        stream = getattr(self, "_stream", None)
        if stream is not None:
            stream.stop()
            stream.close()


def open_sound_source(source: str, sample_rate: int, block: int, realtime: bool | None = None):
    """``mic`` / ``mic:N`` (an input device index or name) or a sound file (played as fast as it is
    processed, or at its own pace with ``realtime``)."""
    if source == "mic" or source.startswith("mic:"):
        dev = source[4:] or None
        return MicSource(sample_rate, block, int(dev) if dev and dev.isdigit() else dev)
    return FileStream(source, sample_rate, block, realtime=bool(realtime))
