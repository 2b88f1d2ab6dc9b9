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

Locations: the source data is read from `data_dir` (default `$FLPJAX_DATA_DIR`,
else `DEFAULT_DATA_DIR` = `<repo root>/../shared/data`), which holds `omniglot/`
and `mini-imagenet/` (a data set's own folder may be given too); prepared data
goes to `cache_dir` (default `$FLPJAX_CACHE_DIR`, else
`~/.cache/flpjax/tfds`). See `omniglot.py` and `mini_imagenet.py` for the
accepted source layouts, class orders and preprocessing.
"""

from __future__ import annotations

import pathlib
import types

import numpy as np
import tensorflow_datasets as tfds

from flpjax.datasets import _common
from flpjax.datasets import mini_imagenet
from flpjax.datasets import omniglot
from flpjax.datasets._common import CACHE_DIR_ENV
from flpjax.datasets._common import ChecksumError
from flpjax.datasets._common import DATA_DIR_ENV
from flpjax.datasets._common import DataError
from flpjax.datasets._common import DEFAULT_DATA_DIR
from flpjax.datasets._common import FormatError
from flpjax.datasets._common import MAX_IMAGE_SIZE
from flpjax.datasets._common import MIN_IMAGE_SIZE
from flpjax.datasets._common import MissingFileError
from flpjax.datasets._common import SplitNotAvailableError

__all__ = [
    "CACHE_DIR_ENV",
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
      data set's own folder; default `$FLPJAX_DATA_DIR`, else `DEFAULT_DATA_DIR`.
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

  Sources are verified during preparation; the record of what was verified is
  kept with the prepared data, and preparation runs again only when a source's
  size or mtime changes, or when the set of available splits changes.

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
    DataError: a source is corrupt (see `verify`).
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
    return module.Builder(config=config_or_name, data_dir=cache, file_format="array_record")

  return _common.prepare(make_builder, layout)


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
  sizes and mtimes on every call) and as `<prepared dir>/arrays/<split>.npy`.

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
  x = images.astype(np.float32) / np.float32(255)
  if dataset == mini_imagenet.NAME:
    x = (x - IMAGENET_MEAN) / IMAGENET_STD
  return x
