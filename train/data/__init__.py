"""The data wing: datasets for training, distillation and evaluation, with timm transforms.

One file per concern; this package re-exports what the rest of edgekit imports:

- :mod:`.split`: the :class:`Split` / :class:`DataBundle` containers, fixed stratified splits, fractions
- :mod:`.labels`: reading label CSVs, encoding labels, verifying images
- :mod:`.sources`: what ``data.source`` names (digits, ImageFolder, CSV, ``a+b``) and :func:`load_data`
- :mod:`.faces`: FER2013 and UTKFace
- :mod:`.clips`: clip datasets (moving digits, clip CSVs over videos)
- :mod:`.transforms`: timm train/eval transforms (:mod:`.audio_transforms` for sound), in a
  :class:`Transforms` (:mod:`.transform_set`)
- :mod:`.sampling`: the keyed dataset, its sampler and loader (every sample a pure function of
  ``(index, view, seed)``)
"""

from edgekit.train.data.clips import is_clip_source
from edgekit.train.data.faces import FER_EMOTIONS, UTK_GENDERS, UTK_RACES
from edgekit.train.data.labels import IMAGE_EXTENSIONS, csv_header
from edgekit.train.data.sampling import EpochSampler, ImageDataset, make_loader, mix_seed, seeded, view_seed
from edgekit.train.data.sources import DIGITS_HEAD, FOLDER_HEAD, load_data, warn_skipped
from edgekit.train.data.split import DataBundle, Split
from edgekit.train.data.transform_set import Transforms
from edgekit.train.data.transforms import build_transforms, eval_transform

__all__ = [
    "DIGITS_HEAD", "FER_EMOTIONS", "FOLDER_HEAD", "IMAGE_EXTENSIONS", "UTK_GENDERS", "UTK_RACES",
    "DataBundle", "EpochSampler", "ImageDataset", "Split", "Transforms",
    "build_transforms", "csv_header", "eval_transform", "is_clip_source", "load_data", "make_loader", "mix_seed",
    "seeded", "view_seed", "warn_skipped",
]
