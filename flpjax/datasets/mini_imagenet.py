"""mini-ImageNet (Vinyals et al., 2016; Ravi & Larochelle split) as a tfds builder.

Nothing is downloaded. Each split needs, in the data set's folder
(`<data_dir>/mini-imagenet/`):

* its list: `splits/<split>.csv`, else `<split>.csv` (header `filename,label`,
  one row per image, `label` the class's WordNet id);
* its images, the first found of:
  1. `<split>.tar` with members `<split>/<wnid>/<filename>` (the copy in
     `../shared/data/mini-imagenet`; nothing else may be in the tar);
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
import io
import os
import pathlib
import tarfile
from typing import Iterator

import numpy as np
import PIL.Image
import tensorflow_datasets as tfds

from flpjax.datasets import _common

NAME = "mini_imagenet"
FOLDER = "mini-imagenet"
SPLITS = ("train", "val", "test")
NUM_CLASSES = {"train": 64, "val": 16, "test": 20}
_FIRST_LABEL = {"train": 0, "val": 64, "test": 80}
IMAGES_PER_CLASS = 600
CHANNELS = 3
SOURCE_SIZE = 84
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)

KNOWN_SHA256 = {
    "train.tar": "5c1f9d10ede238b22205921a87153a41482deaa57cabd8b5b5d3dedf330c0a5d",
    "val.tar": "534835d54b93a32f13bf92c01d7e543dca56db16dd293de35b96395dc39b35ff",
    "test.tar": "cb5068b78b054d3612ec5e2a9d6323650e3bfed413a530fb2ec50868e63265cb",
    "splits/train.csv": "498519cd8e49ce97ed26a4a3638966698ae41ab35e9c68538319fc9b46ba7d2f",
    "splits/val.csv": "5658a59921ca027ee76af92949869c5d6f41d77592ff3b18db325a9d10c893b9",
    "splits/test.csv": "2b7cfa78342995761a572a8158e539bc4e0a80f9bbd7d00c1e17a460fbbb93fa",
}


def dataset_dir(data_dir: _common.PathLike | None = None) -> pathlib.Path:
  """`<data_dir>/mini-imagenet` if it exists, else `data_dir` itself."""
  root = _common.data_dir(data_dir)
  return root / FOLDER if (root / FOLDER).is_dir() else root


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


def read_csv(source: _common.Source, split: str) -> list[tuple[str, list[str]]]:
  """[(wnid, [file names])] of a split's CSV, in order of first appearance.

  Raises:
    FormatError: bad header, duplicate names, or not the split's class counts.
  """
  path = source.path
  try:
    with open(path, newline="") as f:
      rows = list(csv.reader(f))
  except (OSError, UnicodeDecodeError) as e:
    raise _common.FormatError(f"{path} cannot be read ({e}); expected {_csv_expect(split)}.") from e
  if not rows or rows[0] != ["filename", "label"] or any(len(r) != 2 for r in rows[1:]):
    raise _common.FormatError(f"{path}: expected {_csv_expect(split)}.")
  classes: dict[str, list[str]] = {}
  for filename, label in rows[1:]:
    classes.setdefault(label, []).append(filename)
  counts = sorted({len(names) for names in classes.values()})
  duplicates = len(rows) - 1 - len({filename for filename, _ in rows[1:]})
  if len(classes) != NUM_CLASSES[split] or counts != [IMAGES_PER_CLASS] or duplicates:
    raise _common.FormatError(
        f"{path} lists {len(classes)} classes with {counts} images each"
        f" ({duplicates} duplicate file names); expected {_csv_expect(split)},"
        " unique file names."
    )
  return list(classes.items())


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


def _read_tar(source: _common.Source, split: str, classes) -> dict[str, bytes]:
  """{file name: JPEG bytes} of a split's tar, checked against the CSV."""
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
  absent = sorted(set(wnid_of) - set(images))
  if unexpected or absent:
    raise _common.FormatError(
        f"{path}: {len(unexpected)} unexpected members {unexpected[:3]} and"
        f" {len(absent)} missing images {absent[:3]}; expected {source.expect}."
    )
  return images


def read_images(layout: _common.Layout, split: str) -> Iterator[tuple[int, str, int, str, bytes]]:
  """Yields (label, wnid, image index, file name, encoded image) in class order.

  Raises:
    SplitNotAvailableError: `split` is not in `layout`.
    FormatError: the images are not those the CSV lists.
  """
  csv_source, images = layout.require(split)
  classes = read_csv(csv_source, split)
  if images.key.endswith(".tar"):
    data = _read_tar(images, split, classes)
    read = data.__getitem__
  else:
    paths = dict(zip((n for _, names in classes for n in names), images.files))

    def read(name: str) -> bytes:
      try:
        return (layout.root / paths[name]).read_bytes()
      except FileNotFoundError:
        raise _common.MissingFileError(
            f"{layout.root / paths[name]} is missing; expected {images.expect}."
        ) from None

  for label, (wnid, names) in enumerate(classes):
    for index, name in enumerate(names):
      yield label, wnid, index, name, read(name)


def encode(data: bytes, name: str, image_size: int) -> bytes:
  """The stored form of a source image: as is if an S x S RGB JPEG, else PNG.

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
  record = _common.record_sources(layout, KNOWN_SHA256)
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


class MiniImagenet(tfds.core.GeneratorBasedBuilder):
  """mini-ImageNet from a local copy: train 64 / val 16 / test 20 classes."""

  name = "flpjax_mini_imagenet"
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Ravi & Larochelle splits, CSV order."}
  BUILDER_CONFIGS = [builder_config(84)]
  DEFAULT_CONFIG_NAME = "84x84"
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Nothing is downloaded. Pass the folder holding splits/<split>.csv and
  <split>.tar (or the JPEGs in <split>/ or images/) as the manual directory:
  `flpjax.datasets.prepare("mini_imagenet", data_dir=...)` does it.
  """

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
    layout = find_layout(pathlib.Path(dl_manager.manual_dir))
    if not layout.available:
      layout.require("train")
    self.info.metadata[_common.SOURCES_KEY] = _common.record_sources(layout, KNOWN_SHA256)
    for split in layout.available:
      read_csv(layout.splits[split][0], split)
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
