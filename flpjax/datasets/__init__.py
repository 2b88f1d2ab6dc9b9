"""Omniglot and mini-ImageNet from local copies, as uint8 class-major arrays.

The data is prepared once (verified, resized, written as `array_record` by
tensorflow-datasets builders, no TensorFlow needed) into a cache directory, then
read back through `tfds` data sources and kept as a `.npy` per split beside the
prepared files, so that later processes load a split in well under a second.

Example:
  >>> from flpjax import datasets
  >>> images = datasets.load_split("omniglot", "train", image_size=28)
  >>> images.shape, images.dtype
  ((963, 20, 28, 28, 1), dtype('uint8'))
  >>> x = datasets.normalize(images[:5, :5], "omniglot")  # float32 in [0, 1]

A data set of your own (a folder of class subfolders, or arrays) goes through
`load_images` / `from_arrays` (see `folder.py`):

  >>> images, classes = datasets.load_images("~/my_chars", image_size=28, channels=1)

Locations: the source data is read from `data_dir` (default `$FLPJAX_DATA_DIR`,
else `default_data_dir()` = `$XDG_DATA_HOME/flpjax`, i.e.
`~/.local/share/flpjax`), which holds `omniglot/` and `mini-imagenet/` (a data
set's own folder may be given too); prepared data goes to `cache_dir` (default
`$FLPJAX_CACHE_DIR`, else `~/.cache/flpjax/tfds`). See `omniglot.py` and
`mini_imagenet.py` for the accepted source layouts, class orders and
preprocessing, and `_common.py` for how preparation is locked, resumed after
an interruption and matched to its sources by content hash.

The tfds builders (`flpjax_omniglot`, `flpjax_mini_imagenet`, `flpjax_folder`)
are registered on import and work the standard tfds way without TensorFlow
(`array_record` by default): `tfds.data_source("flpjax_omniglot/84x84",
split="train", data_dir=CACHE)` gives random access once prepared; `tfds.load`
and `as_dataset` are refused with one line (tf.data cannot read
`array_record`).
"""

from __future__ import annotations

import pathlib
import types

import numpy as np
import tensorflow_datasets as tfds

from flpjax.datasets import _common
from flpjax.datasets import folder
from flpjax.datasets import mini_imagenet
from flpjax.datasets import omniglot
from flpjax.datasets._common import CACHE_DIR_ENV
from flpjax.datasets._common import CacheError
from flpjax.datasets._common import ChecksumError
from flpjax.datasets._common import DATA_DIR_ENV
from flpjax.datasets._common import DataError
from flpjax.datasets._common import DEFAULT_DATA_DIR
from flpjax.datasets._common import default_data_dir
from flpjax.datasets._common import FormatError
from flpjax.datasets._common import MAX_IMAGE_SIZE
from flpjax.datasets._common import MIN_IMAGE_SIZE
from flpjax.datasets._common import MissingFileError
from flpjax.datasets._common import SplitNotAvailableError
from flpjax.datasets.folder import from_arrays
from flpjax.datasets.folder import load_images
from flpjax.tasks import fewshot

__all__ = [
    "CACHE_DIR_ENV",
    "CacheError",
    "ChecksumError",
    "DATA_DIR_ENV",
    "DATASETS",
    "DEFAULT_DATA_DIR",
    "DataError",
    "FormatError",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MAX_IMAGE_SIZE",
    "MIN_IMAGE_SIZE",
    "MissingFileError",
    "SplitNotAvailableError",
    "available_splits",
    "clear_memory_cache",
    "dataset_dir",
    "default_data_dir",
    "from_arrays",
    "load_images",
    "load_split",
    "normalize",
    "prepare",
    "split_shape",
    "verify",
]

_MODULES: dict[str, types.ModuleType] = {
    omniglot.NAME: omniglot,
    mini_imagenet.NAME: mini_imagenet,
}
DATASETS = tuple(_MODULES)

IMAGENET_MEAN = mini_imagenet.MEAN
IMAGENET_STD = mini_imagenet.STD

# (dataset, split, source folder, cache dir, image size) -> (signatures, array)
_MEMORY: dict[tuple, tuple[dict[str, str], np.ndarray]] = {}


def _module(dataset: str) -> types.ModuleType:
  return _MODULES[_common.check_choice("dataset", dataset, DATASETS)]


def _check_split(dataset: str, split: str) -> types.ModuleType:
  module = _module(dataset)
  _common.check_choice(f"{dataset} split", split, module.SPLITS)
  return module


def dataset_dir(dataset: str, data_dir: _common.PathLike | None = None) -> pathlib.Path:
  """The folder a data set's sources are read from.

  Args:
    dataset: "omniglot" or "mini_imagenet".
    data_dir: root of the data (holding `omniglot/`, `mini-imagenet/`) or the
      data set's own folder; default `$FLPJAX_DATA_DIR`, else
      `default_data_dir()` (`~/.local/share/flpjax`).
  """
  return _module(dataset).dataset_dir(data_dir)


def split_shape(dataset: str, split: str, image_size: int = 84) -> tuple[int, ...]:
  """[num_classes, images_per_class, H, W, C] of a split."""
  module = _check_split(dataset, split)
  size = _common.check_image_size(image_size)
  return (
      module.NUM_CLASSES[split],
      module.IMAGES_PER_CLASS,
      size,
      size,
      module.CHANNELS,
  )


def available_splits(dataset: str, data_dir: _common.PathLike | None = None) -> list[str]:
  """The splits whose source files are present (not verified: no hashing).

  Args:
    dataset: "omniglot" or "mini_imagenet".
    data_dir: see `dataset_dir`.

  Returns:
    The available split names, in the data set's split order.
  """
  module = _module(dataset)
  return module.find_layout(module.dataset_dir(data_dir)).available


def verify(dataset: str, data_dir: _common.PathLike | None = None) -> dict[str, str]:
  """Hashes and checks every source file of a data set that is present.

  Each file is compared with the copy's `SHA256SUMS` (or a known sha256) and
  its structure is checked (array shapes, file lists). Always reads everything;
  `load_split` and `prepare` only do this when the sources changed.

  Args:
    dataset: "omniglot" or "mini_imagenet".
    data_dir: see `dataset_dir`.

  Returns:
    {source (file path relative to the data set's folder, or folder/): sha256}.

  Raises:
    MissingFileError: no split's sources are present.
    ChecksumError: a file's sha256 is not the expected one.
    FormatError: a file's content is not what the data set needs.
  """
  module = _module(dataset)
  return module.verify(module.dataset_dir(data_dir))


def prepare(
    dataset: str,
    *,
    data_dir: _common.PathLike | None = None,
    cache_dir: _common.PathLike | None = None,
    image_size: int = 84,
) -> tfds.core.DatasetBuilder:
  """Prepares every available split (if not done yet) and returns the builder.

  Sources are verified before anything in the cache changes; the sha256 of
  every source is kept with the prepared data, which is reused for any copy
  of the sources with the same content (a copy is hashed once, then known by
  its path, size and mtime) and prepared again only when the content differs
  or a split is added. Several processes may call this at once (a file lock
  serialises them); an interrupted preparation is cleaned up by the next.

  Args:
    dataset: "omniglot" or "mini_imagenet".
    data_dir: see `dataset_dir`.
    cache_dir: root of prepared data; default `$FLPJAX_CACHE_DIR`, else
      `~/.cache/flpjax/tfds`.
    image_size: side of the stored square images, in [MIN_IMAGE_SIZE,
      MAX_IMAGE_SIZE].

  Returns:
    The prepared `tfds` builder: `builder.as_data_source(split)` gives random
    access to decoded examples (dicts of NumPy values), without TensorFlow.

  Raises:
    MissingFileError: no split's sources are present.
    DataError: a source is corrupt (see `verify`); the prepared data is kept.
    CacheError: the cache directory cannot be written.
  """
  module = _module(dataset)
  size = _common.check_image_size(image_size)
  layout = module.find_layout(module.dataset_dir(data_dir))
  if not layout.available:
    layout.require(module.SPLITS[0])
  return _prepare(module, layout, _common.cache_dir(cache_dir), size)


def _prepare(module, layout, cache: pathlib.Path, size: int) -> tfds.core.DatasetBuilder:
  config = module.builder_config(size)
  if config.name not in module.Builder.builder_configs:
    config_or_name = config
  else:
    config_or_name = config.name

  def make_builder():
    return module.Builder(config=config_or_name, data_dir=cache)

  return _common.prepare(make_builder, layout, module.verify_sources)


def load_split(
    dataset: str,
    split: str,
    *,
    data_dir: _common.PathLike | None = None,
    cache_dir: _common.PathLike | None = None,
    image_size: int = 84,
) -> np.ndarray:
  """Loads one split as a class-major uint8 array, preparing the data if needed.

  Results are cached in memory (per process, checked against the sources'
  paths, sizes and mtimes on every call) and as `<prepared dir>/arrays/<split>.npy`.

  Args:
    dataset: "omniglot" (splits "train": 963 classes, "test": 660; 20 images
      each, 1 channel) or "mini_imagenet" ("train": 64, "val": 16, "test": 20;
      600 images each, RGB).
    split: a split of `dataset`.
    data_dir: see `dataset_dir`.
    cache_dir: see `prepare`.
    image_size: side S of the square images, see `prepare`.

  Returns:
    Read-only uint8 [num_classes, images_per_class, S, S, C]; classes and
    images in the documented order. Use `normalize` to get model inputs.

  Raises:
    ValueError: unknown data set or split, image_size out of range.
    SplitNotAvailableError: the split's source files are not present (the
      message names them and lists the available splits).
    DataError: a source is corrupt (see `verify`).
  """
  module = _check_split(dataset, split)
  shape = split_shape(dataset, split, image_size)
  layout = module.find_layout(module.dataset_dir(data_dir))
  layout.require(split)
  cache = _common.cache_dir(cache_dir)
  key = (dataset, split, str(layout.root), str(cache), shape[2])
  signatures = layout.signatures()
  if key in _MEMORY and _MEMORY[key][0] == signatures:
    return _MEMORY[key][1]
  builder = _prepare(module, layout, cache, shape[2])
  array = _common.cached_split_array(builder, split, shape)
  array.flags.writeable = False
  _MEMORY[key] = (signatures, array)
  return array


def clear_memory_cache() -> None:
  """Forgets the arrays `load_split` keeps in memory (files are kept)."""
  _MEMORY.clear()


def normalize(images, dataset: str):
  """Maps stored uint8 images to model inputs, as the reference does.

  Omniglot: x / 255 (paper 1, ink 0). mini-ImageNet: (x / 255 - mean) / std
  with the ImageNet `IMAGENET_MEAN`, `IMAGENET_STD` per channel.

  Args:
    images: uint8 [..., H, W, C] (NumPy or JAX array), C = 1 (Omniglot) or
      3 (mini-ImageNet).
    dataset: "omniglot" or "mini_imagenet".

  Returns:
    float32 array of the same shape and array type.
  """
  module = _module(dataset)
  if images.dtype != np.uint8:
    raise TypeError(f"Expected uint8 images, got {images.dtype}.")
  if images.ndim < 3 or images.shape[-1] != module.CHANNELS:
    raise ValueError(
        f"Expected {dataset} images [..., H, W, {module.CHANNELS}], got shape"
        f" {tuple(images.shape)}."
    )
  return fewshot.normalize(images, dataset)  # the task's normalisation, written once
