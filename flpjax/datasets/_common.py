"""Paths, errors, checksums and the prepare/load cycle shared by the data sets.

A data set's *source* is what the user holds (NumPy archives, tars, folders of
images), read-only. Preparing it verifies every source file (sha256 against the
copy's ``SHA256SUMS`` or a hash known to this module, plus a structural check),
then writes ``array_record`` files with tensorflow-datasets (no TensorFlow
needed: examples are given to tfds already encoded). What was verified is
recorded in the prepared data's tfds metadata (``metadata.json``): a later load
only compares each source's size and mtime with that record and verifies (and
prepares) again when they changed.

Layout of the cache directory::

  <cache_dir>/<builder name>/<config, e.g. 84x84>/<version>/
      *.array_record-*, dataset_info.json, features.json   (tfds)
      metadata.json                                        (tfds; our record)
      arrays/<split>.npy      uint8 [classes, images, H, W, C], written on load
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import re
import shutil
from typing import Callable, Iterable, Mapping, Sequence

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

PathLike = str | os.PathLike

DATA_DIR_ENV = "FLPJAX_DATA_DIR"
CACHE_DIR_ENV = "FLPJAX_CACHE_DIR"

# <repo root>/../shared/data, i.e. `../shared/data` relative to the root of the
# repository (this file is <repo root>/flpjax/datasets/_common.py).
DEFAULT_DATA_DIR = pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "data"

MIN_IMAGE_SIZE = 8
MAX_IMAGE_SIZE = 512

CHECKSUMS_FILE = "SHA256SUMS"
_HASH_CHUNK = 1 << 20


class DataError(ValueError):
  """A data set's source files are missing, incomplete or corrupt."""


class MissingFileError(DataError):
  """A source file (or folder) that is needed is absent."""


class SplitNotAvailableError(MissingFileError):
  """The requested split's source files are not in this copy of the data."""


class ChecksumError(DataError):
  """A source file's sha256 differs from the expected one."""


class FormatError(DataError):
  """A source file cannot be read as, or does not hold, what the data set needs."""


def data_dir(path: PathLike | None = None) -> pathlib.Path:
  """Root of the source data: `path`, else `$FLPJAX_DATA_DIR`, else the default.

  The root holds one folder per data set (`omniglot/`, `mini-imagenet/`); a
  data set's own folder may also be given directly.
  """
  if path is None:
    path = os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR
  return pathlib.Path(path).expanduser().resolve()


def cache_dir(path: PathLike | None = None) -> pathlib.Path:
  """Writable root of prepared data: `path`, `$FLPJAX_CACHE_DIR` or a default.

  The default is `$XDG_CACHE_HOME/flpjax/tfds` (`~/.cache/flpjax/tfds`).
  """
  if path is None:
    path = os.environ.get(CACHE_DIR_ENV)
  if not path:
    xdg = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    path = pathlib.Path(xdg) / "flpjax" / "tfds"
  return pathlib.Path(path).expanduser().resolve()


def check_image_size(image_size: int) -> int:
  """Returns `image_size` if it is an int in [MIN_IMAGE_SIZE, MAX_IMAGE_SIZE]."""
  if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)):
    raise TypeError(f"image_size must be an int, got {image_size!r}.")
  if not MIN_IMAGE_SIZE <= image_size <= MAX_IMAGE_SIZE:
    raise ValueError(
        f"image_size must be in [{MIN_IMAGE_SIZE}, {MAX_IMAGE_SIZE}], got"
        f" {image_size}."
    )
  return int(image_size)


def check_choice(kind: str, value: str, allowed: Iterable[str]) -> str:
  """Returns `value` if it is in `allowed`, else raises a ValueError listing them."""
  allowed = list(allowed)
  if value not in allowed:
    raise ValueError(f"Unknown {kind} {value!r}; expected one of {allowed}.")
  return value


# ------------------------------------------------------------------ checksums


def sha256_file(path: PathLike) -> str:
  """Hex sha256 of a file's bytes."""
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    while chunk := f.read(_HASH_CHUNK):
      digest.update(chunk)
  return digest.hexdigest()


_SUMS_LINE = re.compile(r"^([0-9a-fA-F]{64}) [ *](.+)$")


def read_checksums(root: pathlib.Path) -> dict[str, str]:
  """Parses `root/SHA256SUMS` (`sha256sum` format) into {relative path: sha256}.

  Returns an empty dict when the copy has no such file.
  """
  path = root / CHECKSUMS_FILE
  if not path.is_file():
    return {}
  sums = {}
  for number, line in enumerate(path.read_text().splitlines(), start=1):
    if not line.strip():
      continue
    match = _SUMS_LINE.match(line)
    if match is None:
      raise FormatError(
          f"{path}, line {number}: expected '<64 hex digits>  <file name>'"
          f" (sha256sum format), got {line!r}."
      )
    sums[pathlib.PurePosixPath(match[2].strip()).as_posix().removeprefix("./")] = (
        match[1].lower()
    )
  return sums


@dataclasses.dataclass(frozen=True)
class Source:
  """One source of a data set: a file, or a group of files read together.

  Attributes:
    key: name in messages and in the prepared data's record: the file's path
      relative to the data set's folder, or a group's name (e.g. `images/`).
    root: the data set's folder.
    files: paths relative to `root`, in reading order; one for a single file.
    expect: what the content must be, for error messages.
  """

  key: str
  root: pathlib.Path
  files: tuple[str, ...]
  expect: str

  @classmethod
  def file(cls, root: pathlib.Path, relpath: str, expect: str) -> Source:
    return cls(key=relpath, root=root, files=(relpath,), expect=expect)

  @property
  def path(self) -> pathlib.Path:
    """The path of a single-file source."""
    return self.root / self.key

  def signature(self) -> str:
    """Cheap fingerprint from sizes and mtimes (no reading of the content)."""
    lines = []
    for relpath in self.files:
      try:
        stat = (self.root / relpath).stat()
      except FileNotFoundError:
        raise MissingFileError(
            f"{self.root / relpath} is missing; expected {self.expect}."
        ) from None
      lines.append(f"{relpath}\t{stat.st_size}\t{stat.st_mtime_ns}")
    if len(lines) == 1:
      return lines[0]
    return f"{len(lines)} files, " + hashlib.sha256("\n".join(lines).encode()).hexdigest()

  def verify(self, expected: Mapping[str, str]) -> str:
    """Hashes every file once and checks those with an expected sha256.

    Args:
      expected: {path relative to `root`: sha256}.

    Returns:
      The file's sha256 (a group: the sha256 of its `sha256sum` listing).

    Raises:
      MissingFileError: a file is absent.
      ChecksumError: a file's sha256 differs from `expected`.
    """
    lines = []
    for relpath in self.files:
      path = self.root / relpath
      try:
        actual = sha256_file(path)
      except FileNotFoundError:
        raise MissingFileError(f"{path} is missing; expected {self.expect}.") from None
      want = expected.get(relpath)
      if want is not None and actual != want:
        raise ChecksumError(
            f"{path} is corrupt or incomplete ({path.stat().st_size} bytes): its"
            f" sha256 is {actual}, expected {want}. Expected content: {self.expect}."
            " Replace the file with a good copy."
        )
      lines.append(f"{actual}  {relpath}")
    if len(lines) == 1:
      return lines[0].split()[0]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class Layout:
  """What a copy of a data set holds: the sources of each available split.

  Attributes:
    dataset: the data set's name.
    root: the data set's folder.
    splits: {available split: the sources it is prepared from}.
    missing: {unavailable split: what is missing, for error messages}.
    description: the layout found (e.g. "NumPy archives"), for logs.
  """

  dataset: str
  root: pathlib.Path
  splits: Mapping[str, tuple[Source, ...]]
  missing: Mapping[str, str]
  description: str = ""

  @property
  def available(self) -> list[str]:
    return list(self.splits)

  def sources(self) -> dict[str, Source]:
    """All sources of the available splits, by key, each once."""
    return {s.key: s for sources in self.splits.values() for s in sources}

  def signatures(self) -> dict[str, str]:
    return {key: s.signature() for key, s in self.sources().items()}

  def require(self, split: str) -> tuple[Source, ...]:
    """The sources of `split`, or a SplitNotAvailableError saying what is missing."""
    if split in self.splits:
      return self.splits[split]
    raise SplitNotAvailableError(
        f"{self.dataset} split {split!r} is not available in {self.root}:"
        f" {self.missing[split]}. Available splits: {self.available}."
    )


def expected_checksums(root: pathlib.Path, known: Mapping[str, str]) -> dict[str, str]:
  """The copy's `SHA256SUMS` entries, completed by `known` for unlisted files."""
  return {**known, **read_checksums(root)}


# ------------------------------------------------------ prepare, load, cache

SOURCES_KEY = "flpjax_sources"


def is_fresh(builder: tfds.core.DatasetBuilder, layout: Layout) -> bool:
  """Whether `builder`'s prepared data was made from the sources as they are now."""
  if not builder.data_path.exists():
    return False
  record = builder.info.metadata.get(SOURCES_KEY) if builder.info.metadata else None
  if not record:
    return False
  try:
    current = layout.signatures()
  except MissingFileError:
    return False
  return current == {key: entry["signature"] for key, entry in record.items()}


def prepare(
    make_builder: Callable[[], tfds.core.DatasetBuilder], layout: Layout
) -> tfds.core.DatasetBuilder:
  """Returns a builder whose prepared data matches `layout`, preparing if needed.

  Prepared data made from other sources (or left incomplete) is deleted first.

  Args:
    make_builder: makes the data set's builder (its cache directory, config and
      `array_record` file format).
    layout: the sources as found now.

  Returns:
    A builder ready for `as_data_source(split)` on every split of `layout`.
  """
  builder = make_builder()
  if is_fresh(builder, layout):
    return builder
  if builder.data_path.exists():
    logging.info("Sources changed since %s was prepared; preparing again.", builder.data_path)
    shutil.rmtree(os.fspath(builder.data_path))
    builder = make_builder()
  logging.info(
      "Preparing %s from %s (%s) into %s.",
      builder.info.full_name,
      layout.root,
      layout.description,
      builder.data_path,
  )
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(layout.root))
  )
  return make_builder()


def record_sources(layout: Layout, known: Mapping[str, str]) -> dict[str, dict[str, str]]:
  """Verifies every source of `layout` once; returns the record for the metadata.

  Raises:
    ChecksumError, MissingFileError: see `Source.verify`.
  """
  expected = expected_checksums(layout.root, known)
  record = {}
  for key, source in layout.sources().items():
    signature = source.signature()
    logging.info("Verifying %s.", source.root / key)
    record[key] = {"signature": signature, "sha256": source.verify(expected)}
  return record


def read_split_array(
    builder: tfds.core.DatasetBuilder,
    split: str,
    shape: Sequence[int],
) -> np.ndarray:
  """Reads a prepared split into one uint8 array, through `tfds` data sources.

  Every example must have `label` (class index within the split) and
  `image_index` features; each (label, image_index) slot must be filled once.

  Args:
    builder: a prepared builder.
    split: the split's name.
    shape: [num_classes, images_per_class, H, W, C].

  Returns:
    uint8 array of `shape`.
  """
  source = builder.as_data_source(split=split)
  num_classes, per_class = shape[:2]
  if len(source) != num_classes * per_class:
    raise DataError(
        f"Prepared {builder.info.full_name} split {split!r} in {builder.data_path}"
        f" has {len(source)} examples, expected {num_classes} x {per_class}."
        " Delete that folder to prepare it again."
    )
  out = np.zeros(shape, np.uint8)
  filled = np.zeros(shape[:2], bool)
  batch = 1024
  for start in range(0, len(source), batch):
    for example in source.__getitems__(range(start, min(start + batch, len(source)))):
      slot = int(example["label"]), int(example["image_index"])
      if filled[slot]:
        raise DataError(
            f"Prepared {builder.info.full_name} split {split!r} has two examples"
            f" for class {slot[0]}, image {slot[1]}."
        )
      out[slot] = example["image"]
      filled[slot] = True
  return out


def cached_split_array(
    builder: tfds.core.DatasetBuilder, split: str, shape: Sequence[int]
) -> np.ndarray:
  """`read_split_array`, cached as `<prepared dir>/arrays/<split>.npy`."""
  path = pathlib.Path(os.fspath(builder.data_path)) / "arrays" / f"{split}.npy"
  if path.is_file():
    try:
      array = np.load(path)
    except (OSError, ValueError) as e:
      logging.warning("Ignoring unreadable cache %s: %s", path, e)
    else:
      if array.shape == tuple(shape) and array.dtype == np.uint8:
        return array
      logging.warning("Ignoring cache %s of shape %s.", path, array.shape)
  array = read_split_array(builder, split, shape)
  partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(partial, "wb") as f:
      np.save(f, array)
    os.replace(partial, path)
  except OSError as e:  # A read-only cache still serves the data.
    logging.warning("Could not write %s: %s", path, e)
  return array
