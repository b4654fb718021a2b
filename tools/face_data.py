"""A small UTKFace-style folder and FER2013-style CSV from scikit-image's sample images.

For trying the face path (``edgekit train --data utk/+fer2013.csv --heads 'age:regression,gender,emotion'``,
``edgekit demo kiosk``) and reproducing issue 13's "age 9576442" check without downloading a dataset.
Even files are the astronaut's face (scikit-image ``astronaut``) with random brightness, contrast and
flips, labelled age 20-44, female, happy; odd files are crops of other sample images, labelled age
55-89, male, angry/disgust/fear. Every fifth FER row is ``PublicTest``::

    python tools/face_data.py /tmp/faces          # -> /tmp/faces/utk/*.jpg.chip.jpg, /tmp/faces/fer2013.csv
    python tools/face_data.py /tmp/faces --n 400

These are not real faces of many people: they test the plumbing and the numbers' plausibility, not
a model's accuracy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import cv2
import numpy as np
import typer


def make_faces(out: Path, n: int = 160, seed: int = 0) -> tuple[Path, Path]:
    """Write ``n`` UTKFace files (``age_gender_race_date.jpg.chip.jpg``) and an ``n``-row FER CSV."""
    from skimage import data

    utk = out / "utk"
    utk.mkdir(parents=True, exist_ok=True)
    face = cv2.cvtColor(data.astronaut()[30:230, 150:330], cv2.COLOR_RGB2BGR)
    others = [cv2.cvtColor(im if im.ndim == 3 else np.dstack([im] * 3), cv2.COLOR_RGB2BGR)
              for im in (data.coffee(), data.chelsea(), data.camera())]
    rng = np.random.default_rng(seed)
    lines = ["emotion,pixels,Usage"]
    for i in range(n):
        if i % 2 == 0:
            img = cv2.convertScaleAbs(face, alpha=0.7 + 0.6 * rng.random(), beta=int(rng.integers(-30, 30)))
            img = img[:, ::-1] if rng.random() < 0.5 else img
            age, gender, emotion = int(rng.integers(20, 45)), 1, 3
        else:
            src = others[i % 3]
            y, x = rng.integers(0, src.shape[0] - 150), rng.integers(0, src.shape[1] - 150)
            img = src[y:y + 150, x:x + 150]
            age, gender, emotion = int(rng.integers(55, 90)), 0, int(rng.integers(0, 3))
        img = np.ascontiguousarray(img)
        cv2.imwrite(str(utk / f"{age}_{gender}_{i % 5}_2017010{i:05d}.jpg.chip.jpg"), img)
        grey = cv2.resize(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), (48, 48), interpolation=cv2.INTER_AREA)
        lines.append(f"{emotion},{' '.join(map(str, grey.ravel()))},{'PublicTest' if i % 5 == 0 else 'Training'}")
    fer = out / "fer2013.csv"
    fer.write_text("\n".join(lines) + "\n")
    return utk, fer


def main(out: Annotated[Path, typer.Argument(help="Folder for utk/ and fer2013.csv.")],
         n: Annotated[int, typer.Option(help="Files (and CSV rows).")] = 160,
         seed: int = 0) -> None:
    for path in make_faces(out, n, seed):
        print(path)


if __name__ == "__main__":
    typer.run(main)
