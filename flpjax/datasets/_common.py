"""Paths, errors, checksums and the prepare/load cycle shared by the data sets.

A data set's *source* is what the user holds (NumPy archives, zips, tars,
folders of images), read-only. Preparing it verifies every source file (sha256
against the copy's ``SHA256SUMS`` or a hash known to this module, plus a
structural check) *before* anything in the cache is touched, then writes
``array_record`` files with tensorflow-datasets (no TensorFlow needed: examples
are given to tfds already encoded). Nothing is ever downloaded.

The prepared data records the sha256 of every source it was made from (in its
tfds metadata). A later load matches the sources by that content hash, not by
file dates: a sidecar ``flpjax_sources.json`` remembers, for each copy seen
(absolute path, size, mtime), the sha256 it had, so an unchanged copy is
recognised from its stats alone and a new copy with the same content is hashed
once and then reused; identical copies never prepare again.

Preparation is safe to run from several processes at once and to interrupt:
it holds an exclusive lock (``fcntl.flock`` on ``<config dir>/.flpjax.lock``);
under the lock, what a killed preparation left (tfds' ``incomplete.*``
folders, half-written ``.npy`` files) is removed, and a good prepared copy set
aside while another was being prepared (``previous.<version>``) is put back.
A good prepared copy is only replaced once the new sources have passed every
check, and is put back if preparing the new one fails.

Layout of the cache directory::

  <cache_dir>/<builder name>/<config, e.g. 84x84>/
      .flpjax.lock                                         (the lock)
      <version>/
        *.array_record-*, dataset_info.json, features.json (tfds)
        metadata.json                                      (tfds; our record)
        flpjax_sources.json   {copy's stat signature: sha256}
        arrays/<split>.npy    uint8 [classes, images, H, W, C], written on load
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import json
import os
import pathlib
import re
import shutil
import threading
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

PathLike = str | os.PathLike

DATA_DIR_ENV = "FLPJAX_DATA_DIR"
CACHE_DIR_ENV = "FLPJAX_CACHE_DIR"


def default_data_dir() -> pathlib.Path:
  """`$XDG_DATA_HOME/flpjax`, i.e. `~/.local/share/flpjax`: in the user's own space."""
  xdg = os.environ.get("XDG_DATA_HOME") or pathlib.Path.home() / ".local" / "share"
  return pathlib.Path(xdg).expanduser() / "flpjax"


#: The default root of the source data (as at import; `data_dir` reads it anew).
DEFAULT_DATA_DIR = default_data_dir()

MIN_IMAGE_SIZE = 8
MAX_IMAGE_SIZE = 512

CHECKSUMS_FILE = "SHA256SUMS"
LOCK_FILE = ".flpjax.lock"
STATS_FILE = "flpjax_sources.json"
PREVIOUS_PREFIX = "previous."
_HASH_CHUNK = 1 << 20
_MAX_STATS = 32  # copies remembered per prepared data set


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


class CacheError(DataError):
  """The cache directory cannot be created or written."""


def data_dir(path: PathLike | None = None) -> pathlib.Path:
  """Root of the source data: `path`, else `$FLPJAX_DATA_DIR`, else `default_data_dir()`.

  The root holds one folder per data set (`omniglot/`, `mini-imagenet/`); a
  data set's own folder may also be given directly.
  """
  if path is None or path == "":
    path = os.environ.get(DATA_DIR_ENV) or default_data_dir()
  return pathlib.Path(path).expanduser().resolve()


def data_dir_hint() -> str:
  """How the user names the data directory, for messages."""
  return (f"pass data_dir (--config.fewshot.data_dir) or set ${DATA_DIR_ENV}; the default is"
          f" {default_data_dir()}")


def cache_dir(path: PathLike | None = None) -> pathlib.Path:
  """Writable root of prepared data: `path`, `$FLPJAX_CACHE_DIR` or a default.

  The default is `$XDG_CACHE_HOME/flpjax/tfds` (`~/.cache/flpjax/tfds`).
  """
  if path is None or path == "":
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
    """Fingerprint of this copy from stats alone: absolute paths, sizes, mtimes.

    Only a key into the record of hashes already computed (`flpjax_sources.json`):
    whether two copies hold the same data is decided by their sha256.
    """
    lines = []
    for relpath in self.files:
      path = self.root / relpath
      try:
        stat = path.stat()
      except FileNotFoundError:
        raise MissingFileError(f"{path} is missing; expected {self.expect}.") from None
      lines.append(f"{path}\t{stat.st_size}\t{stat.st_mtime_ns}")
    if len(lines) == 1:
      return lines[0]
    return (f"{self.root / self.key}\t{len(lines)} files\t"
            + hashlib.sha256("\n".join(lines).encode()).hexdigest())

  def sha256(self) -> str:
    """The file's sha256 (a group: the sha256 of its `sha256sum` listing)."""
    return self.verify({})

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


def record_sources(layout: Layout, known: Mapping[str, str]) -> dict[str, dict[str, str]]:
  """Verifies every source of `layout` once; returns the record for the metadata.

  Returns:
    {source key: {"signature": stat signature, "sha256": content hash}}.

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


# ------------------------------------------------------------------ locking

_HELD: dict[str, int] = {}  # lock path -> depth, this process
_HELD_GUARD = threading.RLock()


@contextlib.contextmanager
def locked(directory: pathlib.Path) -> Iterator[str | None]:
  """Holds the exclusive preparation lock of `directory` (re-entrant in a process).

  Yields:
    "acquired" when this call took the lock (the caller may clean up after
    interrupted preparations), "reentrant" when an outer call of this process
    holds it, None when the directory cannot be written (a read-only cache can
    still be read; preparing in it fails with a `CacheError`).
  """
  path = str(directory / LOCK_FILE)
  with _HELD_GUARD:
    if _HELD.get(path):
      _HELD[path] += 1
      try:
        yield "reentrant"
      finally:
        _HELD[path] -= 1
      return
    try:
      directory.mkdir(parents=True, exist_ok=True)
      fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
      if e.errno not in (errno.EACCES, errno.EROFS, errno.EPERM):
        raise CacheError(f"{directory}: cannot create the cache folder ({e.strerror});"
                         f" set ${CACHE_DIR_ENV} to a writable directory.") from None
      yield None
      return
    try:
      fcntl.flock(fd, fcntl.LOCK_EX)  # Waits while another process prepares.
      _HELD[path] = 1
      try:
        yield "acquired"
      finally:
        _HELD.pop(path, None)
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
      os.close(fd)


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def cleanup_interrupted(config_dir: pathlib.Path, version: str) -> list[str]:
  """Removes or restores what interrupted preparations left; call with the lock held.

  * tfds' `incomplete.*` folders (a killed `download_and_prepare`): removed;
  * `previous.<version>` (a good copy set aside while another was prepared):
    put back if `<version>` is absent, else removed;
  * `*.tmp` files of dead processes (a half-written `.npy` or record): removed.

  Returns:
    What was done, one line per folder or file, for the log.
  """
  done = []
  if not config_dir.is_dir():
    return done
  current = config_dir / version
  for path in sorted(config_dir.iterdir()):
    if path.name.startswith(tfds.core.constants.INCOMPLETE_PREFIX) and path.is_dir():
      shutil.rmtree(path, ignore_errors=True)
      done.append(f"removed {path} (left by an interrupted preparation)")
    elif path.name == PREVIOUS_PREFIX + version and path.is_dir():
      if current.exists():
        shutil.rmtree(path, ignore_errors=True)
        done.append(f"removed {path}")
      else:
        os.rename(path, current)
        done.append(f"put back {current} (set aside by an interrupted preparation)")
  tmps = [*current.glob("*.tmp"), *current.glob("arrays/*.tmp")] if current.is_dir() else []
  for tmp in tmps:
    pid = tmp.name.rsplit(".", 2)[-2]
    if not pid.isdigit() or not _pid_alive(int(pid)):
      tmp.unlink(missing_ok=True)
      done.append(f"removed {tmp}")
  for line in done:
    logging.info("%s", line)
  return done


# ------------------------------------------------------ prepare, load, cache

SOURCES_KEY = "flpjax_sources"


def _record(builder: tfds.core.DatasetBuilder) -> dict[str, Any] | None:
  """The sources `builder`'s prepared data was made from, or None if not prepared."""
  if not builder.data_path.exists():
    return None
  metadata = builder.info.metadata
  return dict(metadata.get(SOURCES_KEY) or {}) if metadata else None


def _stats_path(builder: tfds.core.DatasetBuilder) -> pathlib.Path:
  return pathlib.Path(os.fspath(builder.data_path)) / STATS_FILE


def _read_stats(builder: tfds.core.DatasetBuilder) -> dict[str, str]:
  try:
    stats = json.loads(_stats_path(builder).read_text())
  except (OSError, ValueError):
    return {}
  return stats if isinstance(stats, dict) else {}


def _write_stats(builder: tfds.core.DatasetBuilder, hashes: Mapping[str, str]) -> None:
  """Remembers {stat signature: sha256} of the copy just matched (atomic, best effort)."""
  stats = collections.OrderedDict(_read_stats(builder))
  for signature, sha in hashes.items():
    stats.pop(signature, None)
    stats[signature] = sha
  while len(stats) > _MAX_STATS * max(1, len(hashes)):
    stats.popitem(last=False)
  path = _stats_path(builder)
  partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
  try:
    partial.write_text(json.dumps(stats, indent=0))
    os.replace(partial, path)
  except OSError as e:
    logging.warning("Could not write %s: %s", path, e)


def _prepared_splits(builder: tfds.core.DatasetBuilder) -> set[str]:
  return set(builder.info.splits.keys())


def _matches(record: Mapping[str, Any], builder, layout: Layout,
             hashes: Mapping[str, str]) -> bool:
  """Whether prepared data from `record` serves `layout`'s splits, by content hash."""
  if not set(layout.available) <= _prepared_splits(builder):
    return False
  return all(key in record and record[key].get("sha256") == sha for key, sha in hashes.items())


def is_fresh(builder: tfds.core.DatasetBuilder, layout: Layout) -> bool:
  """Whether `builder`'s prepared data serves `layout`, from stats alone (no hashing)."""
  record = _record(builder)
  if not record:
    return False
  stats = _read_stats(builder)
  try:
    signatures = layout.signatures()
  except MissingFileError:
    return False
  known = {key: stats.get(sig) for key, sig in signatures.items()}
  if any(sha is None for sha in known.values()):
    return False
  return _matches(record, builder, layout, known)


def prepare(
    make_builder: Callable[[], tfds.core.DatasetBuilder],
    layout: Layout,
    verify_sources: Callable[[Layout], dict[str, dict[str, str]]],
) -> tfds.core.DatasetBuilder:
  """Returns a builder whose prepared data serves `layout`, preparing if needed.

  Under the preparation lock: cleans up after interrupted preparations; reuses
  prepared data whose sources have the same sha256 as `layout`'s (hashing a
  copy only the first time it is seen); else verifies the new sources
  (`verify_sources`: checksums and structure) and only then prepares them,
  setting the old prepared data aside and putting it back if this fails.

  Args:
    make_builder: makes the data set's builder (its cache directory, config and
      `array_record` file format).
    layout: the sources as found now.
    verify_sources: checks every source of a layout and returns the record
      {key: {"signature", "sha256"}} (raises `DataError` if one is bad).

  Returns:
    A builder ready for `as_data_source(split)` on every split of `layout`.

  Raises:
    DataError: a source is missing or corrupt (the prepared data is untouched),
      or the cache cannot be written (`CacheError`).
  """
  builder = make_builder()
  data_path = pathlib.Path(os.fspath(builder.data_path))
  with locked(data_path.parent) as state:
    held = state is not None
    if state == "acquired":
      cleanup_interrupted(data_path.parent, data_path.name)
      builder = make_builder()
    if is_fresh(builder, layout):
      return builder
    record = _record(builder)
    current = verify_sources(layout)  # Checks new sources before touching the cache.
    hashes = {key: entry["sha256"] for key, entry in current.items()}
    if record and _matches(record, builder, layout, hashes):
      logging.info("%s already holds data prepared from sources with these sha256s;"
                   " reusing it.", data_path)
      if held:
        _write_stats(builder, {current[k]["signature"]: sha for k, sha in hashes.items()})
      return builder
    if not held:
      raise CacheError(f"{data_path.parent} is not writable: cannot prepare"
                       f" {builder.info.full_name} there; set ${CACHE_DIR_ENV} to a"
                       " writable directory.")
    previous = data_path.with_name(PREVIOUS_PREFIX + data_path.name)
    if data_path.exists():
      logging.info("Sources differ from those %s was prepared from; preparing again"
                   " (the old data is kept until this succeeds).", data_path)
      os.rename(data_path, previous)
    builder = make_builder()
    builder.verified_sources = current
    logging.info("Preparing %s from local files in %s (%s) into %s; nothing is downloaded.",
                 builder.info.full_name, layout.root, layout.description, data_path)
    try:
      builder.download_and_prepare(
          download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(layout.root)))
    except BaseException:
      if previous.exists():
        shutil.rmtree(data_path, ignore_errors=True)
        os.rename(previous, data_path)
      raise
    if previous.exists():
      shutil.rmtree(previous, ignore_errors=True)
    builder = make_builder()
    _write_stats(builder, {current[k]["signature"]: sha for k, sha in hashes.items()})
    return builder


class LocalBuilder(tfds.core.GeneratorBasedBuilder):
  """A tfds builder over local files: nothing is downloaded, no TensorFlow needed.

  Standard tfds use works without TensorFlow: `file_format` defaults to
  `array_record`; `download_and_prepare()` reads the sources from
  `download_config.manual_dir`, else from `default_source_dir()`
  (`$FLPJAX_DATA_DIR` or the default data directory), holding the same lock as
  `flpjax.datasets.prepare`; read the result with `tfds.data_source` or
  `builder.as_data_source(split)`. `as_dataset` (and so `tfds.load`) is
  refused with one line: tf.data cannot read `array_record` files.

  Subclasses define `_info`, `_generate_examples`, `find_layout(root)`,
  `verify_sources(layout)` and `default_source_dir()`, and return
  `self.split_generators(layout, make)` from `_split_generators`.
  """

  verified_sources: dict[str, dict[str, str]] | None = None
  manual_root: pathlib.Path | None = None

  def __init__(self, *, file_format=None, **kwargs):
    super().__init__(file_format=file_format or "array_record", **kwargs)

  @classmethod
  def default_source_dir(cls) -> pathlib.Path:
    raise NotImplementedError

  def download_and_prepare(self, *, download_dir=None, download_config=None, file_format=None,
                           **kwargs):
    """tfds' `download_and_prepare`, from local files, under the preparation lock."""
    config = download_config or tfds.download.DownloadConfig()
    if not config.manual_dir:
      config = dataclasses.replace(config, manual_dir=os.fspath(self.default_source_dir()))
    self.manual_root = pathlib.Path(os.fspath(config.manual_dir)).expanduser().resolve()
    data_path = pathlib.Path(os.fspath(self.data_path))
    with locked(data_path.parent) as state:
      if state == "acquired":  # not when `prepare` (which set the old copy aside) holds it
        cleanup_interrupted(data_path.parent, data_path.name)
      return super().download_and_prepare(download_dir=download_dir, download_config=config,
                                          file_format=file_format, **kwargs)

  def source_layout(self, dl_manager) -> Layout:
    """The layout of the sources in the manual directory, which must exist."""
    del dl_manager  # its manual_dir raises a multi-line AssertionError when absent
    root = self.manual_root or self.default_source_dir()
    if not root.is_dir():
      raise MissingFileError(
          f"{root} does not exist: expected the {self.name} sources there"
          f" ({data_dir_hint()}). {' '.join(self.MANUAL_DOWNLOAD_INSTRUCTIONS.split())}")
    return self.find_layout(root)

  def as_dataset(self, *args, **kwargs):
    raise NotImplementedError(
        f"{self.name} is stored as array_record, which tfds.load, as_dataset and tf.data"
        f" cannot read: use tfds.data_source('{self.name}/{self.builder_config.name}',"
        " split=..., data_dir=...) or flpjax.datasets.load_split(...).")

  # tfds prints "Downloading and preparing dataset Unknown size ..." and
  # "... downloaded and prepared to ...": nothing is downloaded here.
  def _log_download_bytes(self) -> None:
    logging.info("Preparing %s from local files (nothing is downloaded) into %s.",
                 self.info.full_name, self.data_dir)

  def _log_download_done(self) -> None:
    logging.info("Prepared %s in %s from local files (nothing was downloaded).",
                 self.info.full_name, self.data_dir)


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
    partial.unlink(missing_ok=True)
    logging.warning("Could not write %s: %s", path, e)
  return array
