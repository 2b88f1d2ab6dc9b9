"""Omniglot (Lake et al., 2015) as a tfds builder over a local copy: no download.

Sources accepted in the data set's folder (`<data_dir>/omniglot/`), per set
(`background`, `evaluation`), the first found is used:

* `images_<set>.npz`: arrays `images` (bool [N, 20, 105, 105], True = paper)
  and `labels` (int64 [N, 20]), rows in official character-id order, with
  `alphabets.tsv` (`split, alphabet, first_id, last_id`) naming the rows
  (a compact copy of the official PNGs).
* `images_<set>.zip`: the official zip, as downloaded from
  https://github.com/brendenlake/omniglot/raw/master/python/images_<set>.zip
  (PNGs `images_<set>/<alphabet>/characterNN/<id>_<MM>.png`; each member's
  CRC is checked as it is read);
* `images_<set>/<alphabet>/characterNN/<id>_<MM>.png`: the official PNG layout
  (the extracted zip).

Class order (the one the paper's split refers to): background alphabets sorted
by name (Python string order), characters in `characterNN` order, then the
evaluation alphabets likewise. The npz rows are *not* in this order: official
ids follow neither alphabet names (id 1 is `Arcadian`, the first sorted
background alphabet `Alphabet_of_the_Magi` has ids 709-728) nor sorting, so
rows are reordered through `alphabets.tsv`. Splits: `train` = the first 963
classes of that order (background classes but the last, `Tifinagh/character55`),
`test` = the remaining 660 (that one and the 659 evaluation classes). The
authors' code took its classes in `os.listdir` order (docs/fidelity.md 7).

Preprocessing (as `torchvision` `Resize((84, 84))` on the reference's 'L'
images): bool -> uint8 (True -> 255), PIL bilinear resize to the config's size,
stored losslessly as PNG, uint8 [S, S, 1]; consumers divide by 255.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import pathlib
import re
import zipfile
from typing import Iterator, Mapping, Sequence

import numpy as np
import PIL.Image
import tensorflow_datasets as tfds

from flpjax.datasets import _common

NAME = "omniglot"
FOLDER = "omniglot"
SPLITS = ("train", "test")
NUM_CLASSES = {"train": 963, "test": 660}
IMAGES_PER_CLASS = 20
CHANNELS = 1
SOURCE_SIZE = 105
SETS = ("background", "evaluation")
SET_SIZES = {"background": 964, "evaluation": 659}
_FIRST_ID = {"background": 1, "evaluation": 965}
# The sets each split's classes come from.
_SPLIT_SETS = {"train": ("background",), "test": ("background", "evaluation")}

ALPHABETS_FILE = "alphabets.tsv"
KNOWN_SHA256 = {
    "images_background.npz": "8bf84167413cd00beacdce3fe582f780ab538d8dbef043a6d688f2527bbce199",
    "images_evaluation.npz": "0b84c7ffd94c4841c0040e529c86a82eaaccb986d8eadad5673f7991b7475276",
    "alphabets.tsv": "7e12da2112681974ee58a208a04fc13c012964ded3b30428c073137e3421b2e6",
}

#: The official zips (MD5 68d2efa1b9178cc56df9314c21c6e718 and 6b91aef0f799c5bb55b94e3f2daec811).
URLS = {
    s: f"https://github.com/brendenlake/omniglot/raw/master/python/images_{s}.zip" for s in SETS
}

_PNG_NAME = re.compile(r"^(\d{4})_(\d{2})\.png$")
_CHARACTER_DIR = re.compile(r"^character(\d+)$")


@dataclasses.dataclass(frozen=True, order=True)
class Character:
  """One Omniglot character (a class).

  Attributes:
    alphabet: the alphabet's folder name, e.g. `Alphabet_of_the_Magi`.
    number: NN of its `characterNN` folder (1-based within the alphabet).
    character_id: official 1-based id (1..1623), the prefix of its PNG names.
    background: whether it belongs to the background set.
  """

  alphabet: str
  number: int
  character_id: int
  background: bool

  @property
  def name(self) -> str:
    return f"{self.alphabet}/character{self.number:02d}"

  @property
  def set_name(self) -> str:
    return "background" if self.background else "evaluation"


def class_order(characters: Sequence[Character]) -> list[Character]:
  """Background before evaluation, alphabets by name, characters by number."""
  return sorted(characters, key=lambda c: (not c.background, c.alphabet, c.number))


def preprocess(images: np.ndarray, image_size: int) -> np.ndarray:
  """Converts drawings to the stored form: 'L' images resized with PIL bilinear.

  Args:
    images: bool (True = paper) or uint8 [..., H, W].
    image_size: side S of the output.

  Returns:
    uint8 [..., S, S, 1]; paper 255, ink 0 (intermediate values on edges).
  """
  images = np.asarray(images)
  if images.dtype == bool:
    images = images.astype(np.uint8) * 255
  if images.dtype != np.uint8:
    raise TypeError(f"Expected bool or uint8 images, got {images.dtype}.")
  flat = images.reshape((-1,) + images.shape[-2:])
  out = np.stack(
      [
          np.asarray(
              PIL.Image.fromarray(image, "L").resize(
                  (image_size, image_size), PIL.Image.BILINEAR
              )
          )
          for image in flat
      ]
  )
  return out.reshape(images.shape[:-2] + (image_size, image_size, 1))


# ---------------------------------------------------------------- sources


def dataset_dir(data_dir: _common.PathLike | None = None) -> pathlib.Path:
  """`<data_dir>/omniglot` if it exists (or `data_dir` does not), else `data_dir` itself."""
  root = _common.data_dir(data_dir)
  return root / FOLDER if (root / FOLDER).is_dir() or not root.is_dir() else root


def _npz_expect(set_name: str) -> str:
  n = SET_SIZES[set_name]
  return (
      f"a zip/npz with arrays images (bool [{n}, {IMAGES_PER_CLASS}, {SOURCE_SIZE},"
      f" {SOURCE_SIZE}]) and labels (int64 [{n}, {IMAGES_PER_CLASS}])"
  )


_TSV_EXPECT = (
    "a tab-separated table with header split, alphabet, first_id, last_id and"
    " one row per alphabet (ids 1..1623, background first)"
)


def _png_expect(set_name: str) -> str:
  return (
      f"{SET_SIZES[set_name]} character folders <alphabet>/characterNN/ with"
      f" {IMAGES_PER_CLASS} drawings <id>_<MM>.png ({SOURCE_SIZE}x{SOURCE_SIZE}) each"
  )


def _set_source(root: pathlib.Path, set_name: str) -> tuple[_common.Source, ...] | str:
  """The sources of one set, or a description of what is missing."""
  npz = f"images_{set_name}.npz"
  archive = f"images_{set_name}.zip"
  folder = root / f"images_{set_name}"
  if (root / npz).is_file():
    if not (root / ALPHABETS_FILE).is_file():
      return f"missing {root / ALPHABETS_FILE} ({_TSV_EXPECT}), needed with {npz}"
    return (
        _common.Source.file(root, npz, _npz_expect(set_name)),
        _common.Source.file(root, ALPHABETS_FILE, _TSV_EXPECT),
    )
  if (root / archive).is_file():
    return (_common.Source.file(root, archive, f"the official zip of {_png_expect(set_name)}"),)
  if folder.is_dir():
    files = tuple(sorted(p.relative_to(root).as_posix() for p in folder.glob("*/*/*.png")))
    if files:
      return (
          _common.Source(
              key=f"images_{set_name}/", root=root, files=files, expect=_png_expect(set_name)
          ),
      )
  return (
      f"missing the official {root / archive} (download {URLS[set_name]}) or its extracted"
      f" folder {folder}/ ({_png_expect(set_name)}), or {root / npz} ({_npz_expect(set_name)})"
  )


def find_layout(root: pathlib.Path) -> _common.Layout:
  """Finds which splits the Omniglot folder `root` can provide (stats only)."""
  per_set = {s: _set_source(root, s) for s in SETS}
  splits, missing = {}, {}
  for split in SPLITS:
    problems = [per_set[s] for s in _SPLIT_SETS[split] if isinstance(per_set[s], str)]
    if problems:
      missing[split] = "; ".join(problems)
    else:
      sources = {src.key: src for s in _SPLIT_SETS[split] for src in per_set[s]}
      splits[split] = tuple(sources.values())
  kinds = [
      f"{s}: {per_set[s][0].key}" for s in SETS if not isinstance(per_set[s], str)
  ]
  return _common.Layout(
      dataset=NAME,
      root=root,
      splits=splits,
      missing=missing,
      description=", ".join(kinds) or "nothing",
  )


@dataclasses.dataclass
class _Set:
  """One set's characters (official order) and a reader of their drawings."""

  characters: tuple[Character, ...]
  npz_images: np.ndarray | None = None  # bool [N, 20, 105, 105], official order
  png_files: Mapping[Character, tuple[pathlib.Path, ...]] | None = None
  zip_path: pathlib.Path | None = None  # png_files are then member names
  _zip: zipfile.ZipFile | None = None

  def _read(self, path) -> bytes:
    if self.zip_path is None:
      return pathlib.Path(path).read_bytes()
    if self._zip is None:
      self._zip = zipfile.ZipFile(self.zip_path)
    try:
      return self._zip.read(str(path))
    except (zipfile.BadZipFile, OSError, KeyError) as e:  # a bad CRC-32 included
      raise _common.FormatError(
          f"{self.zip_path}: member {path} cannot be read ({e}); the zip is corrupt or"
          f" incomplete: download it again from {URLS[self.characters[0].set_name]}."
      ) from None

  def images(self, character: Character) -> np.ndarray:
    """uint8 [20, 105, 105] drawings of `character`, paper 255."""
    if self.npz_images is not None:
      row = character.character_id - _FIRST_ID[character.set_name]
      return self.npz_images[row].astype(np.uint8) * 255
    images = []
    for path in self.png_files[character]:
      where = f"{self.zip_path}: member {path}" if self.zip_path else f"{path}"
      try:
        with PIL.Image.open(io.BytesIO(self._read(path))) as image:
          images.append(np.asarray(image.convert("L")))
      except (OSError, ValueError) as e:
        raise _common.FormatError(f"{where} is not a readable PNG image: {e}.") from e
      if images[-1].shape != (SOURCE_SIZE, SOURCE_SIZE):
        raise _common.FormatError(
            f"{where} is {images[-1].shape[1]}x{images[-1].shape[0]}, expected"
            f" {SOURCE_SIZE}x{SOURCE_SIZE}."
        )
    return np.stack(images)


def _read_alphabets(path: pathlib.Path) -> list[tuple[str, str, int, int]]:
  """Rows (set, alphabet, first_id, last_id) of `alphabets.tsv`, checked."""
  try:
    with open(path, newline="") as f:
      rows = list(csv.reader(f, delimiter="\t"))
    if rows[0] != ["split", "alphabet", "first_id", "last_id"]:
      raise ValueError(f"header {rows[0]}")
    table = [(s, a, int(first), int(last)) for s, a, first, last in rows[1:]]
  except (OSError, ValueError, IndexError, UnicodeDecodeError) as e:
    raise _common.FormatError(f"{path}: expected {_TSV_EXPECT}; {e}.") from e
  next_id = 1
  for set_name in SETS:
    for s, alphabet, first, last in table:
      if s != set_name:
        continue
      if first != next_id or last < first:
        raise _common.FormatError(
            f"{path}: alphabet {alphabet} has ids {first}..{last}, expected to"
            f" start at {next_id}; expected {_TSV_EXPECT}."
        )
      next_id = last + 1
    if next_id != _FIRST_ID[set_name] + SET_SIZES[set_name]:
      raise _common.FormatError(
          f"{path}: the {set_name} alphabets cover ids up to {next_id - 1},"
          f" expected {_FIRST_ID[set_name] + SET_SIZES[set_name] - 1}."
      )
  if any(s not in SETS for s, *_ in table):
    raise _common.FormatError(f"{path}: unknown split names; expected {_TSV_EXPECT}.")
  return table


def _read_npz_set(root: pathlib.Path, set_name: str) -> _Set:
  path = root / f"images_{set_name}.npz"
  n = SET_SIZES[set_name]
  try:
    with np.load(path) as archive:
      images, labels = archive["images"], archive["labels"]
  except Exception as e:  # zipfile, pickle, KeyError, EOF: all mean "not this file".
    raise _common.FormatError(
        f"{path} cannot be read ({type(e).__name__}: {e}); expected {_npz_expect(set_name)}."
    ) from e
  shape = (n, IMAGES_PER_CLASS, SOURCE_SIZE, SOURCE_SIZE)
  if (
      images.dtype != bool
      or images.shape != shape
      or labels.shape != shape[:2]
      or not np.array_equal(labels, np.broadcast_to(np.arange(n)[:, None], shape[:2]))
  ):
    raise _common.FormatError(
        f"{path} holds images {images.dtype} {list(images.shape)} and labels"
        f" {labels.dtype} {list(labels.shape)}; expected {_npz_expect(set_name)},"
        " labels[k] == k."
    )
  characters = []
  for s, alphabet, first, last in _read_alphabets(root / ALPHABETS_FILE):
    if s == set_name:
      characters += [
          Character(alphabet, k - first + 1, k, set_name == "background")
          for k in range(first, last + 1)
      ]
  return _Set(characters=tuple(characters), npz_images=images)


def _read_png_set(root: pathlib.Path, source: _common.Source, set_name: str) -> _Set:
  """Lists (and checks the names of) the PNGs of a folder or of the official zip."""
  folder = root / f"images_{set_name}"
  zip_path = None
  if source.key.endswith(".zip"):
    zip_path = source.path
    try:
      with zipfile.ZipFile(zip_path) as archive:
        names = [n for n in archive.namelist() if n.endswith(".png") and "__MACOSX" not in n]
    except (zipfile.BadZipFile, OSError) as e:
      raise _common.FormatError(
          f"{zip_path} cannot be read as a zip ({e}); expected {source.expect}: download it"
          f" again from {URLS[set_name]}."
      ) from None
    members = [(n.split("/")[-3:], n) for n in names if n.count("/") >= 2]
    folder = zip_path
  else:
    members = [(relpath.split("/")[1:], root / relpath) for relpath in source.files]
  by_dir: dict[tuple[str, str], list[tuple[str, object]]] = {}
  for (alphabet, character, name), path in members:
    by_dir.setdefault((alphabet, character), []).append((name, path))
  files = {}
  for (alphabet, character_dir), entries in by_dir.items():
    entries.sort()
    names = [name for name, _ in entries]
    where = f"{zip_path}: {alphabet}/{character_dir}/" if zip_path else folder / alphabet / character_dir
    number = _CHARACTER_DIR.match(character_dir)
    matches = [_PNG_NAME.match(name) for name in names]
    ids = {m[1] for m in matches if m}
    if (
        number is None
        or len(names) != IMAGES_PER_CLASS
        or not all(matches)
        or len(ids) != 1
        or [int(m[2]) for m in matches] != list(range(1, IMAGES_PER_CLASS + 1))
    ):
      raise _common.FormatError(
          f"{where} holds {names[:3]}... ({len(names)} PNGs); expected"
          f" a characterNN folder of {IMAGES_PER_CLASS} files <id>_01.png .."
          f" <id>_{IMAGES_PER_CLASS}.png."
      )
    character = Character(alphabet, int(number[1]), int(ids.pop()), set_name == "background")
    files[character] = tuple(path for _, path in entries)
  first = _FIRST_ID[set_name]
  ids = sorted(c.character_id for c in files)
  if ids != list(range(first, first + SET_SIZES[set_name])):
    raise _common.FormatError(
        f"{folder} holds {len(ids)} characters with ids {ids[:1]}..{ids[-1:]};"
        f" expected {_png_expect(set_name)}, ids {first}..{first + SET_SIZES[set_name] - 1}."
    )
  characters = tuple(sorted(files, key=lambda c: c.character_id))
  return _Set(characters=characters, png_files=files, zip_path=zip_path)


def read_sets(layout: _common.Layout) -> dict[str, _Set]:
  """Reads every set the available splits need, checking its structure.

  NumPy archives are read whole; PNGs (in a folder or a zip) are only listed
  here and decoded (and checked) by `_Set.images`.
  """
  needed = [s for s in SETS if any(s in _SPLIT_SETS[split] for split in layout.available)]
  sources = layout.sources()
  sets = {}
  for set_name in needed:
    if f"images_{set_name}.npz" in sources:
      sets[set_name] = _read_npz_set(layout.root, set_name)
    else:
      key = next(k for k in (f"images_{set_name}.zip", f"images_{set_name}/") if k in sources)
      sets[set_name] = _read_png_set(layout.root, sources[key], set_name)
  return sets


def split_classes(sets: Mapping[str, _Set], split: str) -> list[Character]:
  """The classes of `split` in order (needs the sets of `_SPLIT_SETS[split]`)."""
  order = class_order([c for s in _SPLIT_SETS[split] for c in sets[s].characters])
  return order[: NUM_CLASSES["train"]] if split == "train" else order[NUM_CLASSES["train"] :]


def verify_sources(layout: _common.Layout) -> dict[str, dict[str, str]]:
  """sha256 of every source, checked against `SHA256SUMS` / `KNOWN_SHA256`.

  Returns:
    The record kept with the prepared data: {key: {"signature", "sha256"}}.
  """
  return _common.record_sources(layout, KNOWN_SHA256)


def verify(root: pathlib.Path) -> dict[str, str]:
  """Hashes and checks every source in `root`; returns {source: sha256}.

  Raises:
    MissingFileError: no split is available.
    ChecksumError, FormatError: a source is corrupt.
  """
  layout = find_layout(root)
  if not layout.available:
    raise _common.MissingFileError(
        f"No Omniglot split can be prepared from {root}: {layout.missing['train']}."
    )
  record = verify_sources(layout)
  for image_set in read_sets(layout).values():
    if image_set.png_files is not None:
      for character in image_set.characters:
        image_set.images(character)  # Decodes and checks every PNG.
  return {key: entry["sha256"] for key, entry in record.items()}


# ---------------------------------------------------------------- builder


@dataclasses.dataclass(eq=False)
class OmniglotConfig(tfds.core.BuilderConfig):
  """Builder config: the side of the stored square images."""

  image_size: int = 84


def builder_config(image_size: int) -> OmniglotConfig:
  """The config named `<S>x<S>` for images of side `image_size`."""
  image_size = _common.check_image_size(image_size)
  return OmniglotConfig(
      name=f"{image_size}x{image_size}",
      description=f"Drawings resized (PIL bilinear) to {image_size}x{image_size}.",
      image_size=image_size,
  )


class Omniglot(_common.LocalBuilder):
  """Omniglot from a local copy, split 963 / 660 classes as in the FLP paper.

  `tfds.builder("flpjax_omniglot/28x28", data_dir=CACHE)` (after `import
  flpjax.datasets`); `download_and_prepare()` reads `dataset_dir()` unless
  `download_config.manual_dir` names the folder.
  """

  name = "flpjax_omniglot"
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Splits train (963 classes) / test (660), sorted order."}
  BUILDER_CONFIGS = [builder_config(84), builder_config(28)]
  DEFAULT_CONFIG_NAME = "84x84"
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Nothing is downloaded. Put the official images_background.zip and
  images_evaluation.zip (https://github.com/brendenlake/omniglot/raw/master/python/),
  or their extracted folders, or images_background.npz, images_evaluation.npz
  and alphabets.tsv, in one folder and pass it as the manual directory
  (default: <data dir>/omniglot).
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
            "image": tfds.features.Image(
                shape=(size, size, CHANNELS), encoding_format="png"
            ),
            "label": tfds.features.Scalar(np.int64, doc="class index within the split"),
            "global_label": tfds.features.Scalar(
                np.int64, doc="class index in the order of all 1623 classes"
            ),
            "image_index": tfds.features.Scalar(np.int64, doc="drawing 0..19"),
            "character_id": tfds.features.Scalar(np.int64, doc="official id 1..1623"),
            "alphabet": tfds.features.Text(),
            "character_number": tfds.features.Scalar(np.int64, doc="NN of characterNN"),
        }),
        supervised_keys=("image", "label"),
        homepage="https://github.com/brendenlake/omniglot",
        citation=(
            "@article{lake2015human, title={Human-level concept learning through"
            " probabilistic program induction}, author={Lake, Brenden M and"
            " Salakhutdinov, Ruslan and Tenenbaum, Joshua B}, journal={Science},"
            " volume={350}, number={6266}, pages={1332--1338}, year={2015}}"
        ),
        metadata=tfds.core.MetadataDict(),
        disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    layout = self.source_layout(dl_manager)
    if not layout.available:
      layout.require("train")
    self.info.metadata[_common.SOURCES_KEY] = self.verified_sources or verify_sources(layout)
    sets = read_sets(layout)
    return {split: self._generate_examples(sets, split) for split in layout.available}

  def _generate_examples(self, sets: Mapping[str, _Set], split: str) -> Iterator:
    size = self.builder_config.image_size
    offset = 0 if split == "train" else NUM_CLASSES["train"]
    for label, character in enumerate(split_classes(sets, split)):
      images = preprocess(sets[character.set_name].images(character), size)
      for index, image in enumerate(images):
        buffer = io.BytesIO()
        PIL.Image.fromarray(image[..., 0], "L").save(buffer, format="PNG")
        yield f"{offset + label:04d}_{index:02d}", {
            "image": buffer.getvalue(),
            "label": label,
            "global_label": offset + label,
            "image_index": index,
            "character_id": character.character_id,
            "alphabet": character.alphabet,
            "character_number": character.number,
        }


Builder = Omniglot
