"""A few-shot data set of your own: a folder of class subfolders, or arrays.

A folder holds one subfolder per class, each with that class's images (PNG,
JPEG, BMP, GIF, WebP, TIFF, PPM/PGM; any size)::

  <root>/<class name>/<image file>

Classes are taken in sorted order of their folder names, images in sorted
order of their file names. Every class must hold the same number of images;
every image must have the expected number of channels (1: grey, 3: RGB; from
the first image when not given): a one-channel image is never silently made
three-channel, nor the reverse. A mismatch is refused with one line naming the
class, the file and the count. Images are resized to `S x S` with PIL bilinear
(non-square images are stretched).

A folder is prepared like Omniglot and mini-ImageNet: verified, decoded and
stored as `array_record` by the tfds builder `flpjax_folder` (one config per
folder, image size and channel count, e.g. `mine-1a2b3c4d5e-28x28x1`) under the
cache directory, matched to its files by content hash and read back as a
`.npy`; the one tfds split is `images`.

Arrays: `from_arrays` takes uint8 `[classes, images, H, W(, C)]`, or one array
`[images, H, W(, C)]` per class (a list or a {class name: array} dict); a
`.npy` file holds the former, a `.npz` either `images` (the former) or one
array per class.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import io
import os
import pathlib
import re
from typing import Iterator, Mapping, Sequence

import numpy as np
import PIL.Image
import tensorflow_datasets as tfds

from flpjax.datasets import _common

NAME = "folder"
SPLIT = "images"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm",
                  ".pgm")
ARRAY_SUFFIXES = (".npy", ".npz")

# PIL mode -> (mode converted to, channels).
_MODES = {"1": ("L", 1), "L": ("L", 1), "I": ("L", 1), "I;16": ("L", 1), "F": ("L", 1),
          "LA": ("LA", 2), "La": ("LA", 2), "P": ("RGB", 3), "RGB": ("RGB", 3),
          "YCbCr": ("RGB", 3), "CMYK": ("RGB", 3), "LAB": ("RGB", 3), "HSV": ("RGB", 3),
          "PA": ("RGBA", 4), "RGBA": ("RGBA", 4), "RGBa": ("RGBA", 4)}
_FOLDER_EXPECT = ("one subfolder per class, each holding the same number of images"
                  f" ({', '.join(IMAGE_SUFFIXES)})")


@dataclasses.dataclass(frozen=True)
class Listing:
  """The classes and image files of a folder (from a directory listing alone).

  Attributes:
    root: the folder.
    classes: class names (subfolder names), sorted.
    files: per class, its image files relative to `root`, sorted.
  """

  root: pathlib.Path
  classes: tuple[str, ...]
  files: tuple[tuple[str, ...], ...]

  @property
  def images_per_class(self) -> int:
    return len(self.files[0])


def _count_problem(where: str, names: Sequence[str], counts: Sequence[int]) -> str | None:
  """The class whose image count differs from the others', as one line, or None."""
  if len(set(counts)) <= 1:
    return None
  common = collections.Counter(counts).most_common(1)[0][0]
  odd = next(i for i, n in enumerate(counts) if n != common)
  others = sum(n != common for n in counts)
  return (f"{where}: class {names[odd]!r} has {counts[odd]} images, expected {common} as"
          f" the others ({others} of {len(counts)} classes differ): every class needs the"
          " same number of images; remove images or classes")


def list_folder(root: _common.PathLike) -> Listing:
  """Lists a folder of class subfolders; checks it before anything is decoded.

  Raises:
    MissingFileError: `root` does not exist.
    FormatError: no class folder, an image outside the class folders, a class
      without images, or classes with unequal image counts (the message names
      the class and its count).
  """
  root = pathlib.Path(root).expanduser().resolve()
  if not root.is_dir():
    raise _common.MissingFileError(f"{root} does not exist; expected a folder of"
                                   f" {_FOLDER_EXPECT}.")
  classes, files = [], []
  for entry in sorted(root.iterdir()):
    if entry.name.startswith("."):
      continue
    if entry.is_file() and entry.suffix.lower() in IMAGE_SUFFIXES:
      raise _common.FormatError(f"{entry} is an image outside the class folders; expected"
                                f" {root} to hold {_FOLDER_EXPECT}.")
    if not entry.is_dir():
      continue
    images = sorted(p.relative_to(root).as_posix() for p in entry.iterdir()
                    if p.is_file() and not p.name.startswith(".")
                    and p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
      raise _common.FormatError(f"{entry}: class {entry.name!r} has 0 images; expected"
                                f" {_FOLDER_EXPECT}.")
    classes.append(entry.name)
    files.append(tuple(images))
  if not classes:
    raise _common.FormatError(f"{root} holds no class folder; expected {_FOLDER_EXPECT}.")
  problem = _count_problem(str(root), classes, [len(f) for f in files])
  if problem:
    raise _common.FormatError(problem + ".")
  return Listing(root=root, classes=tuple(classes), files=tuple(files))


def image_channels(image: PIL.Image.Image) -> int:
  """Channels of a PIL image as stored (1 grey, 3 colour; 2 or 4 with alpha)."""
  return _MODES.get(image.mode, ("RGB", 3))[1]


def find_layout(root: pathlib.Path) -> _common.Layout:
  """The folder as a layout of one split, `images`, whose source is every image file."""
  listing = list_folder(root)
  files = tuple(f for per_class in listing.files for f in per_class)
  source = _common.Source(key="classes/", root=listing.root, files=files, expect=_FOLDER_EXPECT)
  return _common.Layout(dataset=NAME, root=listing.root, splits={SPLIT: (source,)}, missing={},
                        description=f"{len(listing.classes)} class folders x"
                                    f" {listing.images_per_class} images")


def _check_channels(listing: Listing, channels: int) -> None:
  """Opens every image's header (no decoding): each must have `channels` channels."""
  for name, per_class in zip(listing.classes, listing.files):
    for relpath in per_class:
      path = listing.root / relpath
      try:
        with PIL.Image.open(path) as image:
          found = image_channels(image)
          mode = image.mode
      except (OSError, ValueError) as e:
        raise _common.FormatError(f"{path}: class {name!r}: not a readable image ({e}).") from None
      if found != channels:
        raise _common.FormatError(
            f"{path}: class {name!r} has an image with {found} channel(s) (PIL mode {mode}),"
            f" expected {channels}: convert the images, or set channels={found}"
            " (--config.custom.channels).")


def first_image_channels(listing: Listing) -> int:
  """Channels of the first image of the first class."""
  path = listing.root / listing.files[0][0]
  try:
    with PIL.Image.open(path) as image:
      return image_channels(image)
  except (OSError, ValueError) as e:
    raise _common.FormatError(f"{path}: class {listing.classes[0]!r}: not a readable image"
                              f" ({e}).") from None


def verify_sources(layout: _common.Layout, channels: int) -> dict[str, dict[str, str]]:
  """Channel counts of every image (headers), then the sha256 of every file.

  A `SHA256SUMS` in the folder (paths relative to it) is checked too.
  """
  listing = list_folder(layout.root)
  _check_channels(listing, channels)
  return _common.record_sources(layout, {})


def read_image(path: pathlib.Path, class_name: str, channels: int, image_size: int) -> np.ndarray:
  """uint8 [S, S, C] of one image file, resized with PIL bilinear; channels checked."""
  try:
    with PIL.Image.open(path) as image:
      found = image_channels(image)
      if found != channels:
        raise _common.FormatError(
            f"{path}: class {class_name!r} has an image with {found} channel(s) (PIL mode"
            f" {image.mode}), expected {channels}.")
      image = image.convert(_MODES.get(image.mode, ("RGB", 3))[0])
      if image.size != (image_size, image_size):
        image = image.resize((image_size, image_size), PIL.Image.BILINEAR)
      array = np.asarray(image, np.uint8)
  except (OSError, ValueError) as e:
    if isinstance(e, _common.DataError):
      raise
    raise _common.FormatError(f"{path}: class {class_name!r}: not a readable image ({e}).") from None
  return array.reshape(image_size, image_size, channels)


# ---------------------------------------------------------------- builder


@dataclasses.dataclass(eq=False)
class FolderConfig(tfds.core.BuilderConfig):
  """Builder config: the folder, the side of the stored images and their channels."""

  root: str = ""
  image_size: int = 84
  channels: int = 3


def builder_config(root: pathlib.Path, image_size: int, channels: int) -> FolderConfig:
  """The config `<folder name>-<hash of its path>-<S>x<S>x<C>` of one folder."""
  image_size = _common.check_image_size(image_size)
  slug = re.sub(r"[^A-Za-z0-9_]+", "_", root.name).strip("_")[:40] or "folder"
  digest = hashlib.sha256(os.fspath(root).encode()).hexdigest()[:10]
  name = f"{slug}-{digest}-{image_size}x{image_size}x{channels}"
  if name not in _CONFIGS:  # one object per name: tfds compares configs by identity
    _CONFIGS[name] = FolderConfig(
        name=name,
        description=f"{root}: images resized (PIL bilinear) to {image_size}x{image_size},"
                    f" {channels} channel(s).",
        root=os.fspath(root), image_size=image_size, channels=channels)
  return _CONFIGS[name]


_CONFIGS: dict[str, FolderConfig] = {}  # made by `builder_config` in this process


class Folder(_common.LocalBuilder):
  """A folder of class subfolders (see the module docstring): one split, `images`."""

  name = "flpjax_folder"
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Classes in sorted folder order, images in sorted name order."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Nothing is downloaded. The manual directory is the folder of class subfolders
  (the config's folder by default): flpjax.datasets.load_images(folder, ...) does it.
  """
  find_layout = staticmethod(find_layout)

  @classmethod
  def get_builder_config(cls, name, version=None, **kwargs):
    """The config of a folder seen in this process (no 'custom configuration' warning)."""
    if name in _CONFIGS:
      return _CONFIGS[name]
    return super().get_builder_config(name, version, **kwargs)

  def default_source_dir(self) -> pathlib.Path:  # pylint: disable=arguments-differ
    return pathlib.Path(self.builder_config.root)

  def _info(self) -> tfds.core.DatasetInfo:
    c = self.builder_config
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(c.image_size, c.image_size, c.channels),
                                         encoding_format="png"),
            "label": tfds.features.Scalar(np.int64, doc="class index, sorted folder order"),
            "image_index": tfds.features.Scalar(np.int64, doc="image index, sorted name order"),
            "class_name": tfds.features.Text(),
            "filename": tfds.features.Text(),
        }),
        supervised_keys=("image", "label"),
        metadata=tfds.core.MetadataDict(),
        disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    layout = self.source_layout(dl_manager)
    channels = self.builder_config.channels
    self.info.metadata[_common.SOURCES_KEY] = (self.verified_sources
                                               or verify_sources(layout, channels))
    return {SPLIT: self._generate_examples(list_folder(layout.root))}

  def _generate_examples(self, listing: Listing) -> Iterator:
    c = self.builder_config
    for label, (name, per_class) in enumerate(zip(listing.classes, listing.files)):
      for index, relpath in enumerate(per_class):
        image = read_image(listing.root / relpath, name, c.channels, c.image_size)
        buffer = io.BytesIO()
        PIL.Image.fromarray(image[..., 0] if c.channels == 1 else image).save(buffer,
                                                                             format="PNG")
        yield f"{label:06d}_{index:06d}", {
            "image": buffer.getvalue(), "label": label, "image_index": index,
            "class_name": name, "filename": relpath,
        }


Builder = Folder


def load_folder(root: _common.PathLike, *, image_size: int, channels: int | None = None,
                cache_dir: _common.PathLike | None = None) -> tuple[np.ndarray, tuple[str, ...]]:
  """A folder of class subfolders as uint8 `[classes, images, S, S, C]`, prepared once.

  Args:
    root: the folder.
    image_size: side S.
    channels: 1 or 3 (or 2, 4 with alpha); None: those of the first image.
    cache_dir: see `flpjax.datasets.prepare`.

  Returns:
    (images, class names).

  Raises:
    MissingFileError, FormatError: see `list_folder`; an image with another
      channel count (the class, file and count are named).
  """
  listing = list_folder(root)
  channels = first_image_channels(listing) if channels is None else channels
  config = builder_config(listing.root, image_size, channels)
  layout = find_layout(listing.root)
  cache = _common.cache_dir(cache_dir)

  def make_builder():
    return Folder(config=config, data_dir=cache)

  builder = _common.prepare(make_builder, layout, lambda l: verify_sources(l, channels))
  shape = (len(listing.classes), listing.images_per_class, image_size, image_size, channels)
  return _common.cached_split_array(builder, SPLIT, shape), listing.classes


# ---------------------------------------------------------------- arrays


def from_arrays(images, *, image_size: int | None = None, channels: int | None = None,
                where: str = "arrays") -> tuple[np.ndarray, tuple[str, ...]]:
  """Arrays of your own as uint8 `[classes, images, S, S, C]`, checked.

  Args:
    images: uint8 `[classes, images, H, W(, C)]`; or one uint8 array
      `[images, H, W(, C)]` per class, as a list or a {class name: array} dict.
      `[..., H, W]` means one channel.
    image_size: side S (PIL bilinear resize); None keeps H x W (must be square).
    channels: the channels expected; None: those of the arrays.
    where: the source's name, for messages.

  Returns:
    (images, class names: the dict's keys, else '0', '1', ...).

  Raises:
    FormatError: not uint8, unequal image counts, another channel count, or
      non-square images without `image_size` (the class and count are named).
  """
  if isinstance(images, Mapping):
    names, per_class = [str(k) for k in images], [np.asarray(v) for v in images.values()]
  elif isinstance(images, np.ndarray):
    names, per_class = [str(i) for i in range(len(images))], list(images)
  else:
    per_class = [np.asarray(v) for v in images]
    names = [str(i) for i in range(len(per_class))]
  if not per_class:
    raise _common.FormatError(f"{where}: no class; expected {_ARRAYS_EXPECT}.")
  for name, array in zip(names, per_class):
    if array.dtype != np.uint8 or array.ndim not in (3, 4):
      raise _common.FormatError(
          f"{where}: class {name!r} is {array.dtype} {list(array.shape)}; expected"
          f" {_ARRAYS_EXPECT}.")
  problem = _count_problem(where, names, [len(a) for a in per_class])
  if problem:
    raise _common.FormatError(problem + ".")
  per_class = [a[..., None] if a.ndim == 3 else a for a in per_class]
  expected = per_class[0].shape[-1] if channels is None else channels
  for name, array in zip(names, per_class):
    if array.shape[-1] != expected:
      raise _common.FormatError(
          f"{where}: class {name!r} has images with {array.shape[-1]} channel(s), expected"
          f" {expected}" + (" (as the first class)" if channels is None else "") + ".")
  stacked = np.stack(per_class)
  size = image_size
  if size is None:
    if stacked.shape[2] != stacked.shape[3]:
      raise _common.FormatError(f"{where}: images are {stacked.shape[3]}x{stacked.shape[2]};"
                                " give image_size to resize them to a square.")
    return stacked, tuple(names)
  size = _common.check_image_size(size)
  if stacked.shape[2:4] == (size, size):
    return stacked, tuple(names)
  out = np.empty(stacked.shape[:2] + (size, size, expected), np.uint8)
  for c in range(stacked.shape[0]):
    for i in range(stacked.shape[1]):
      image = stacked[c, i, ..., 0] if expected == 1 else stacked[c, i]
      resized = np.asarray(PIL.Image.fromarray(image).resize((size, size), PIL.Image.BILINEAR))
      out[c, i] = resized.reshape(size, size, expected)
  return out, tuple(names)


_ARRAYS_EXPECT = ("uint8 [classes, images, H, W(, C)], or one uint8 [images, H, W(, C)] array"
                  " per class")


def load_arrays(path: _common.PathLike, *, image_size: int | None = None,
                channels: int | None = None) -> tuple[np.ndarray, tuple[str, ...]]:
  """`from_arrays` of a `.npy` file, or a `.npz` of `images` or of one array per class."""
  path = pathlib.Path(path).expanduser().resolve()
  if not path.is_file():
    raise _common.MissingFileError(f"{path} does not exist; expected a .npy or .npz of"
                                   f" {_ARRAYS_EXPECT}.")
  try:
    if path.suffix == ".npy":
      images = np.load(path, allow_pickle=False)
    else:
      with np.load(path, allow_pickle=False) as archive:
        images = (archive["images"] if "images" in archive.files
                  else {k: archive[k] for k in archive.files})
  except (OSError, ValueError, EOFError) as e:
    raise _common.FormatError(f"{path} cannot be read ({e}); expected {_ARRAYS_EXPECT}.") from None
  return from_arrays(images, image_size=image_size, channels=channels, where=str(path))


def inspect(path: _common.PathLike) -> tuple[tuple[str, ...], int]:
  """(class names, images per class) of a folder or array file, without decoding images.

  Raises:
    MissingFileError, FormatError: see `list_folder` and `load_arrays`.
  """
  path = pathlib.Path(path).expanduser().resolve()
  if path.suffix in ARRAY_SUFFIXES and not path.is_dir():
    if path.suffix == ".npy" and path.is_file():
      try:
        shape = np.load(path, mmap_mode="r", allow_pickle=False).shape
      except (OSError, ValueError) as e:
        raise _common.FormatError(f"{path} cannot be read ({e}); expected {_ARRAYS_EXPECT}.") from None
      if len(shape) not in (4, 5):
        raise _common.FormatError(f"{path} holds an array of shape {list(shape)}; expected"
                                  f" {_ARRAYS_EXPECT}.")
      return tuple(str(i) for i in range(shape[0])), shape[1]
    images, names = load_arrays(path)
    return names, images.shape[1]
  listing = list_folder(path)
  return listing.classes, listing.images_per_class


def load_images(path: _common.PathLike, *, image_size: int, channels: int | None = None,
                cache_dir: _common.PathLike | None = None) -> tuple[np.ndarray, tuple[str, ...]]:
  """A folder of class subfolders (`load_folder`) or an array file (`load_arrays`)."""
  path = pathlib.Path(path).expanduser()
  if path.suffix in ARRAY_SUFFIXES and not path.is_dir():
    return load_arrays(path, image_size=image_size, channels=channels)
  return load_folder(path, image_size=image_size, channels=channels, cache_dir=cache_dir)
