"""mini-ImageNet (Vinyals et al., 2016; Ravi & Larochelle split) as a tfds builder.

Nothing is downloaded. Each split needs, in the data set's folder
(`<data_dir>/mini-imagenet/`):

* its list: `splits/<split>.csv`, else `<split>.csv` (header `filename,label`,
  one row per image, `label` the class's WordNet id);
* its images, the first found of:
  1. `<split>.tar` with members `<split>/<wnid>/<filename>` (the standard
     tars; nothing else may be in the tar);
  2. a folder `<split>/` with `<split>/<wnid>/<filename>` or `<split>/<filename>`;
  3. a folder `images/` with `images/<filename>` (the original layout, all
     splits in one folder).

A copy may hold only some splits; the others are reported as unavailable.

Class order: order of first appearance in the CSV; images in CSV order within
a class (600 each). Splits: train 64 classes, val 16, test 20; `global_label`
numbers the 100 classes train, val, test.

Stored images: uint8 [S, S, 3] RGB. A source JPEG that already is S x S RGB is
stored as is (its original bytes: no re-encoding); any other image is
converted to RGB, resized with PIL bilinear (as `torchvision`
`Resize((84, 84))` on PIL images) and stored as PNG (lossless). Consumers apply
the ImageNet normalisation (`MEAN`, `STD`), see `flpjax.datasets.normalize`.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import os
import pathlib
import tarfile
from typing import Iterator

from absl import logging
import numpy as np
import PIL.Image
import tensorflow_datasets as tfds

from flpjax.datasets import _common
from flpjax.tasks import fewshot
from flpjax.datasets._mini_imagenet_classes import CLASS_DIGESTS as _CLASS_DIGESTS

NAME = "mini_imagenet"
FOLDER = "mini-imagenet"
SPLITS = ("train", "val", "test")
NUM_CLASSES = {"train": 64, "val": 16, "test": 20}
_FIRST_LABEL = {"train": 0, "val": 64, "test": 80}
IMAGES_PER_CLASS = 600
CHANNELS = 3
SOURCE_SIZE = 84
MEAN, STD = fewshot.IMAGENET_MEAN, fewshot.IMAGENET_STD  # defined once, with the task

KNOWN_SHA256 = {
    "train.tar": "5c1f9d10ede238b22205921a87153a41482deaa57cabd8b5b5d3dedf330c0a5d",
    "val.tar": "534835d54b93a32f13bf92c01d7e543dca56db16dd293de35b96395dc39b35ff",
    "test.tar": "cb5068b78b054d3612ec5e2a9d6323650e3bfed413a530fb2ec50868e63265cb",
    "splits/train.csv": "498519cd8e49ce97ed26a4a3638966698ae41ab35e9c68538319fc9b46ba7d2f",
    "splits/val.csv": "5658a59921ca027ee76af92949869c5d6f41d77592ff3b18db325a9d10c893b9",
    "splits/test.csv": "2b7cfa78342995761a572a8158e539bc4e0a80f9bbd7d00c1e17a460fbbb93fa",
}


def dataset_dir(data_dir: _common.PathLike | None = None) -> pathlib.Path:
  """`<data_dir>/mini-imagenet` if it exists (or `data_dir` does not), else `data_dir` itself."""
  root = _common.data_dir(data_dir)
  return root / FOLDER if (root / FOLDER).is_dir() or not root.is_dir() else root


def _csv_expect(split: str) -> str:
  return (
      f"a CSV with header filename,label listing {NUM_CLASSES[split]} classes x"
      f" {IMAGES_PER_CLASS} images"
  )


def _images_expect(split: str) -> str:
  return (
      f"the {NUM_CLASSES[split] * IMAGES_PER_CLASS} JPEGs listed in the {split} CSV"
      f" as members {split}/<wnid>/<filename>, nothing else"
  )


def _csv_source(root: pathlib.Path, split: str) -> _common.Source | None:
  for relpath in (f"splits/{split}.csv", f"{split}.csv"):
    if (root / relpath).is_file():
      return _common.Source.file(root, relpath, _csv_expect(split))
  return None


def _rows(first: int, count: int) -> str:
  return f"row {first}" if count == 1 else f"rows {first}.."


def read_csv(
    source: _common.Source, split: str, standard: bool = False
) -> list[tuple[str, list[str]]]:
  """[(wnid, [file names])] of a split's CSV, in order of first appearance.

  Args:
    source: the CSV.
    split: its split.
    standard: the CSV must be the standard split's (it has a known sha256):
      a class not of that split is named before any checksum is compared.

  Raises:
    FormatError: bad header or row, duplicate names, an unknown class, or not
      the split's class counts; the message names the row and the class.
  """
  path = source.path
  try:
    with open(path, newline="") as f:
      rows = list(csv.reader(f))
  except (OSError, UnicodeDecodeError, csv.Error) as e:
    raise _common.FormatError(f"{path} cannot be read ({e}); expected {_csv_expect(split)}.") from e
  if not rows or rows[0] != ["filename", "label"]:
    raise _common.FormatError(
        f"{path}, row 1: header {rows[0] if rows else 'absent'}; expected {_csv_expect(split)}.")
  classes: dict[str, list[str]] = {}
  first_row: dict[str, int] = {}
  seen: dict[str, int] = {}
  for number, row in enumerate(rows[1:], start=2):
    if len(row) != 2 or not all(row):
      raise _common.FormatError(
          f"{path}, row {number}: {','.join(row)!r}; expected filename,label.")
    filename, label = row
    if filename in seen:
      raise _common.FormatError(
          f"{path}, row {number}: file name {filename} is also on row {seen[filename]};"
          " expected unique file names.")
    seen[filename] = number
    classes.setdefault(label, []).append(filename)
    first_row.setdefault(label, number)
  known = _CLASS_DIGESTS[split]
  if standard:
    for label in classes:
      if label not in known:
        raise _common.FormatError(
            f"{path}, {_rows(first_row[label], len(classes[label]))}: class {label} is not one"
            f" of the {NUM_CLASSES[split]} classes of the standard {split} split"
            f" ({', '.join(list(known)[:3])}, ...); the file is not the standard CSV.")
  odd = [label for label, names in classes.items() if len(names) != IMAGES_PER_CLASS]
  if odd:
    label = min(odd, key=lambda c: len(classes[c]))
    raise _common.FormatError(
        f"{path}, {_rows(first_row[label], len(classes[label]))}: class {label} has"
        f" {len(classes[label])} images, expected {IMAGES_PER_CLASS}"
        f" ({len(odd)} classes with another count); expected {_csv_expect(split)}.")
  if len(classes) != NUM_CLASSES[split]:
    raise _common.FormatError(
        f"{path} lists {len(classes)} classes ({', '.join(list(classes)[:3])}, ...);"
        f" expected {_csv_expect(split)}.")
  return list(classes.items())


def _csv_rows(source: _common.Source) -> dict[str, int]:
  """{file name: its row in the CSV} (1 is the header), for messages."""
  with open(source.path, newline="") as f:
    return {row[0]: number for number, row in enumerate(csv.reader(f), start=1) if row}


def _folder_source(
    root: pathlib.Path, split: str, csv_source: _common.Source
) -> _common.Source | None:
  """A folder of the split's JPEGs as one source, or None if there is none."""
  classes = read_csv(csv_source, split)
  if (root / split).is_dir():
    found = {}
    for directory, _, files in os.walk(root / split):
      for name in files:
        found[name] = (pathlib.Path(directory) / name).relative_to(root).as_posix()
    files = [found.get(name, f"{split}/{wnid}/{name}") for wnid, names in classes for name in names]
    key = f"{split}/"
  elif (root / "images").is_dir():
    files = [f"images/{name}" for _, names in classes for name in names]
    key = f"images/ ({split})"
  else:
    return None
  return _common.Source(key=key, root=root, files=tuple(files), expect=_images_expect(split))


def find_layout(root: pathlib.Path) -> _common.Layout:
  """Finds which splits the mini-ImageNet folder `root` can provide."""
  splits, missing, kinds = {}, {}, []
  for split in SPLITS:
    csv_source = _csv_source(root, split)
    tar = f"{split}.tar"
    if csv_source is None:
      missing[split] = (
          f"missing {root / 'splits' / (split + '.csv')} (expected sha256"
          f" {KNOWN_SHA256['splits/' + split + '.csv']}; {_csv_expect(split)})"
      )
      continue
    if (root / tar).is_file():
      images = _common.Source.file(root, tar, f"a tar of {_images_expect(split)}")
    else:
      images = _folder_source(root, split, csv_source)
    if images is None:
      missing[split] = (
          f"missing {root / tar} (expected sha256 {KNOWN_SHA256[tar]}), or a folder"
          f" {root / split}/ or {root / 'images'}/ with the JPEGs listed in"
          f" {csv_source.path}"
      )
      continue
    splits[split] = (csv_source, images)
    kinds.append(f"{split}: {images.key}")
  return _common.Layout(
      dataset=NAME,
      root=root,
      splits=splits,
      missing=missing,
      description=", ".join(kinds) or "nothing",
  )


def _read_tar(
    source: _common.Source, split: str, classes, csv_source: _common.Source | None = None
) -> dict[str, bytes]:
  """{file name: JPEG bytes} of a split's tar, checked against the CSV.

  Raises:
    FormatError: the tar cannot be read, holds a member that the CSV does not
      list (named), or lacks images the CSV lists (the class, its CSV rows and
      the members expected are named).
  """
  path = source.path
  wnid_of = {name: wnid for wnid, names in classes for name in names}
  images, unexpected = {}, []
  try:
    with tarfile.open(path) as tar:
      for member in tar:
        if not member.isfile():
          continue
        parts = member.name.split("/")
        if len(parts) != 3 or parts[0] != split or wnid_of.get(parts[2]) != parts[1]:
          unexpected.append(member.name)
          continue
        images[parts[2]] = tar.extractfile(member).read()
  except (tarfile.TarError, OSError, EOFError) as e:
    raise _common.FormatError(f"{path} cannot be read ({e}); expected {source.expect}.") from e
  absent = [name for name in wnid_of if name not in images]
  if not (unexpected or absent):
    return images
  rows = _csv_rows(csv_source) if csv_source is not None else {}
  where = csv_source.path.name if csv_source is not None else "the CSV"
  problems = []
  if absent:
    wnid = wnid_of[absent[0]]
    names = [n for n in absent if wnid_of[n] == wnid]
    listed = dict(classes)[wnid]
    if len(names) == len(listed):
      problems.append(
          f"class {wnid} ({where} rows {rows.get(listed[0], '?')}..{rows.get(listed[-1], '?')})"
          f" has no images in the tar (expected members {split}/{wnid}/<filename>)")
    else:
      problems.append(
          f"member {split}/{wnid}/{names[0]} ({where} row {rows.get(names[0], '?')}, class"
          f" {wnid}) is missing ({len(absent)} missing in all)")
  if unexpected:
    folders = sorted({m.rsplit("/", 1)[0] + "/" for m in unexpected})
    if len(folders) < len(unexpected) and all(f.count("/") == 2 for f in folders):
      problems.append(f"its folder {folders[0]} ({len(unexpected)} members in"
                      f" {len(folders)} folders) is not a class of {where}")
    else:
      problems.append(f"member {unexpected[0]} is not listed in {where}"
                      f" ({len(unexpected)} such members)")
  raise _common.FormatError(f"{path}: {'; '.join(problems)}; expected {source.expect}.")


def read_images(layout: _common.Layout, split: str) -> Iterator[tuple[int, str, int, str, bytes]]:
  """Yields (label, wnid, image index, file name, encoded image) in class order.

  Raises:
    SplitNotAvailableError: `split` is not in `layout`.
    FormatError: the images are not those the CSV lists.
  """
  csv_source, images = layout.require(split)
  classes = read_csv(csv_source, split)
  if images.key.endswith(".tar"):
    data = _read_tar(images, split, classes, csv_source)
    read = data.__getitem__
  else:
    paths = dict(zip((n for _, names in classes for n in names), images.files))

    def read(name: str) -> bytes:
      try:
        return (layout.root / paths[name]).read_bytes()
      except FileNotFoundError:
        row = _csv_rows(csv_source).get(name, "?")
        raise _common.MissingFileError(
            f"{layout.root / paths[name]} is missing: {csv_source.path.name} row {row} lists"
            f" it (class {wnid_of[name]}); expected {images.expect}."
        ) from None

    wnid_of = {name: wnid for wnid, names in classes for name in names}

  for label, (wnid, names) in enumerate(classes):
    for index, name in enumerate(names):
      yield label, wnid, index, name, read(name)


def encode(data: bytes, name: str, image_size: int) -> bytes:
  """The stored form of a source image: as is if an S x S RGB JPEG, else PNG.

  Grey-scale source images (a few of ImageNet's) become RGB with three equal
  channels, as `torchvision`'s `ImageFolder` loader (`convert('RGB')`) does.

  Args:
    data: the encoded source image.
    name: its name, for errors.
    image_size: side S.

  Returns:
    Encoded image that decodes to uint8 [S, S, 3].
  """
  try:
    with PIL.Image.open(io.BytesIO(data)) as image:
      if image.format == "JPEG" and image.mode == "RGB" and image.size == (image_size,) * 2:
        return data
      image = image.convert("RGB")
      if image.size != (image_size, image_size):
        image = image.resize((image_size, image_size), PIL.Image.BILINEAR)
      buffer = io.BytesIO()
      image.save(buffer, format="PNG")
      return buffer.getvalue()
  except (OSError, ValueError) as e:
    raise _common.FormatError(f"{name} is not a readable image: {e}.") from e


def _check_tar_content(source: _common.Source, split: str, csv_source: _common.Source,
                       actual: str, want: str) -> None:
  """A tar whose sha256 is not the standard one: accepted if its images are the standard ones.

  Raises:
    ChecksumError: naming the first class whose images differ (its members and
      CSV rows).
  """
  classes = read_csv(csv_source, split)
  try:
    images = _read_tar(source, split, classes, csv_source)
  except _common.FormatError as e:
    raise _common.ChecksumError(
        f"{source.path} is corrupt or incomplete ({source.path.stat().st_size} bytes): its"
        f" sha256 is {actual}, expected {want}; {str(e).removeprefix(str(source.path)).lstrip(': ')}"
        " Replace the file with a good copy.") from None
  rows = _csv_rows(csv_source)
  for wnid, names in classes:
    listing = "".join(f"{hashlib.sha256(images[n]).hexdigest()}  {n}\n" for n in names)
    if hashlib.sha256(listing.encode()).hexdigest()[:16] != _CLASS_DIGESTS[split].get(wnid):
      raise _common.ChecksumError(
          f"{source.path} is corrupt or not the standard {split}.tar: its sha256 is {actual},"
          f" expected {want}, and the images of class {wnid} (members {split}/{wnid}/*,"
          f" {csv_source.path.name} rows {rows.get(names[0], '?')}..{rows.get(names[-1], '?')})"
          " differ from the standard ones. Replace the file with a good copy.")
  logging.info("%s is not byte-identical to the standard %s.tar but holds the same images;"
               " accepted.", source.path, split)


def verify_sources(layout: _common.Layout) -> dict[str, dict[str, str]]:
  """Checks every source of `layout`: CSVs first (rows, classes), then sha256s.

  A CSV or tar with a known sha256 (`SHA256SUMS`, `KNOWN_SHA256`) must match
  it; a tar that does not but holds exactly the standard images (re-tarred) is
  accepted, as the same images in a folder are.

  Returns:
    The record kept with the prepared data: {key: {"signature", "sha256"}}.

  Raises:
    FormatError: a CSV's row or class is wrong, or a tar's members.
    ChecksumError: a file is not the expected one.
  """
  expected = _common.expected_checksums(layout.root, KNOWN_SHA256)
  for split in layout.available:
    csv_source = layout.splits[split][0]
    read_csv(csv_source, split, standard=csv_source.key in expected)
  record = {}
  for split in layout.available:
    csv_source, images = layout.splits[split]
    for source in (csv_source, images):
      if source.key in record:
        continue
      logging.info("Verifying %s.", source.root / source.key)
      signature = source.signature()
      want = expected.get(source.key)
      if source.key.endswith(".tar") and want is not None:
        actual = source.sha256()
        if actual != want:
          _check_tar_content(source, split, csv_source, actual, want)
      else:
        actual = source.verify(expected)
      record[source.key] = {"signature": signature, "sha256": actual}
  return record


def verify(root: pathlib.Path) -> dict[str, str]:
  """Hashes and checks every source in `root`; returns {source: sha256}.

  Also opens every image's header (format, size).

  Raises:
    MissingFileError: no split is available.
    ChecksumError, FormatError: a source is corrupt.
  """
  layout = find_layout(root)
  if not layout.available:
    raise _common.MissingFileError(
        f"No mini-ImageNet split can be prepared from {root}: "
        + "; ".join(f"{s}: {m}" for s, m in layout.missing.items())
    )
  record = verify_sources(layout)
  for split in layout.available:
    for *_, name, data in read_images(layout, split):
      try:
        with PIL.Image.open(io.BytesIO(data)) as image:
          image.size  # pylint: disable=pointless-statement
      except (OSError, ValueError) as e:
        raise _common.FormatError(f"{split} image {name} is not readable: {e}.") from e
  return {key: entry["sha256"] for key, entry in record.items()}


# ---------------------------------------------------------------- builder


@dataclasses.dataclass(eq=False)
class MiniImagenetConfig(tfds.core.BuilderConfig):
  """Builder config: the side of the stored square images."""

  image_size: int = 84


def builder_config(image_size: int) -> MiniImagenetConfig:
  """The config named `<S>x<S>` for images of side `image_size`."""
  image_size = _common.check_image_size(image_size)
  return MiniImagenetConfig(
      name=f"{image_size}x{image_size}",
      description=(
          f"{image_size}x{image_size} RGB"
          + (" (source JPEGs as is)." if image_size == SOURCE_SIZE else ", PIL bilinear.")
      ),
      image_size=image_size,
  )


class MiniImagenet(_common.LocalBuilder):
  """mini-ImageNet from a local copy: train 64 / val 16 / test 20 classes.

  `tfds.builder("flpjax_mini_imagenet", data_dir=CACHE)` (after `import
  flpjax.datasets`); `download_and_prepare()` reads `dataset_dir()` unless
  `download_config.manual_dir` names the folder.
  """

  name = "flpjax_mini_imagenet"
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Ravi & Larochelle splits, CSV order."}
  BUILDER_CONFIGS = [builder_config(84)]
  DEFAULT_CONFIG_NAME = "84x84"
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Nothing is downloaded. Put splits/<split>.csv and <split>.tar (or the JPEGs
  in <split>/ or images/) in one folder and pass it as the manual directory
  (default: <data dir>/mini-imagenet).
  """
  find_layout = staticmethod(find_layout)

  @classmethod
  def default_source_dir(cls) -> pathlib.Path:
    return dataset_dir(None)

  def _info(self) -> tfds.core.DatasetInfo:
    size = self.builder_config.image_size
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            # JPEG or PNG bytes (see the module docstring); PIL reads both.
            "image": tfds.features.Image(shape=(size, size, CHANNELS)),
            "label": tfds.features.Scalar(np.int64, doc="class index within the split"),
            "global_label": tfds.features.Scalar(
                np.int64, doc="class index among all 100 (train, val, test)"
            ),
            "image_index": tfds.features.Scalar(np.int64, doc="image 0..599, CSV order"),
            "wnid": tfds.features.Text(),
            "filename": tfds.features.Text(),
        }),
        supervised_keys=("image", "label"),
        homepage="https://github.com/twitter-research/meta-learning-lstm",
        citation=(
            "@inproceedings{ravi2017optimization, title={Optimization as a Model"
            " for Few-Shot Learning}, author={Ravi, Sachin and Larochelle, Hugo},"
            " booktitle={ICLR}, year={2017}}"
        ),
        metadata=tfds.core.MetadataDict(),
        disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    layout = self.source_layout(dl_manager)
    if not layout.available:
      layout.require("train")
    self.info.metadata[_common.SOURCES_KEY] = self.verified_sources or verify_sources(layout)
    return {split: self._generate_examples(layout, split) for split in layout.available}

  def _generate_examples(self, layout: _common.Layout, split: str) -> Iterator:
    size = self.builder_config.image_size
    for label, wnid, index, name, data in read_images(layout, split):
      yield f"{label:02d}_{index:03d}", {
          "image": encode(data, name, size),
          "label": label,
          "global_label": _FIRST_LABEL[split] + label,
          "image_index": index,
          "wnid": wnid,
          "filename": name,
      }


Builder = MiniImagenet
