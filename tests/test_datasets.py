"""Tests of flpjax.datasets on the real data in ../shared/data (read-only).

Prepared data goes to a session-scoped temporary directory. Omniglot is mostly
tested at 28x28 for speed; mini-ImageNet at 84x84 (val and test, its source
JPEGs stored as is). Corruption tests work on copies in tmp_path.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import pathlib
import shutil
import sys
import tarfile
import time
import zipfile

import numpy as np
import PIL.Image
import pytest
import tensorflow_datasets as tfds

from flpjax import datasets
from flpjax.datasets import _common

OMNIGLOT_DIR = datasets.dataset_dir("omniglot")
MINI_DIR = datasets.dataset_dir("mini_imagenet")
SIZE = 28  # Omniglot image size for most tests.

needs_omniglot = pytest.mark.skipif(
    not (OMNIGLOT_DIR / "images_background.npz").is_file(),
    reason=f"Omniglot data not found in {OMNIGLOT_DIR} (set FLPJAX_DATA_DIR)",
)
needs_mini = pytest.mark.skipif(
    not (MINI_DIR / "val.tar").is_file(),
    reason=f"mini-ImageNet val.tar not found in {MINI_DIR} (set FLPJAX_DATA_DIR)",
)


@pytest.fixture(scope="session")
def cache(data_cache) -> pathlib.Path:
  return data_cache  # conftest.py: the session's, which the Omniglot meta-training tests reuse


@pytest.fixture(scope="session")
def omniglot(cache) -> dict[str, np.ndarray]:
  return {
      split: datasets.load_split("omniglot", split, cache_dir=cache, image_size=SIZE)
      for split in ("train", "test")
  }


@pytest.fixture(scope="session")
def omniglot_builder(omniglot, cache) -> tfds.core.DatasetBuilder:
  return datasets.prepare("omniglot", cache_dir=cache, image_size=SIZE)


def _first_examples(builder, split: str, per_class: int) -> list[dict]:
  """The first example of every class (records are class-major)."""
  source = builder.as_data_source(split, decoders={"image": tfds.decode.SkipDecoding()})
  return source.__getitems__(range(0, len(source), per_class))


def _alphabets() -> list[tuple[str, str, int, int]]:
  with open(OMNIGLOT_DIR / "alphabets.tsv", newline="") as f:
    rows = list(csv.reader(f, delimiter="\t"))[1:]
  return [(s, a, int(first), int(last)) for s, a, first, last in rows]


def _expected_omniglot_order() -> list[tuple[str, int, int]]:
  """(alphabet, characterNN, official id) of all 1623 classes, from alphabets.tsv."""
  order = []
  for set_name in ("background", "evaluation"):
    rows = sorted((a, first, last) for s, a, first, last in _alphabets() if s == set_name)
    for alphabet, first, last in rows:
      order += [(alphabet, k - first + 1, k) for k in range(first, last + 1)]
  return order


def _npz_drawing(character_id: int, index: int) -> np.ndarray:
  """bool [105, 105] drawing straight from the npz (True = paper)."""
  name, row = (
      ("images_background.npz", character_id - 1)
      if character_id <= 964
      else ("images_evaluation.npz", character_id - 965)
  )
  with np.load(OMNIGLOT_DIR / name) as archive:
    return archive["images"][row, index]


def _pil_bilinear(image: np.ndarray, size: int) -> np.ndarray:
  """uint8 [H, W] or [H, W, 3] resized with PIL's bilinear filter."""
  return np.asarray(PIL.Image.fromarray(image).resize((size, size), PIL.Image.BILINEAR))


def _png(image: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  PIL.Image.fromarray(image).save(buffer, format="PNG")
  return buffer.getvalue()


def _tmp_kwargs(tmp_path: pathlib.Path, image_size: int = SIZE) -> dict:
  return dict(data_dir=tmp_path, cache_dir=tmp_path / "cache", image_size=image_size)


# ------------------------------------------------------------ arguments


def test_default_data_dir_and_env_override(monkeypatch, tmp_path):
  """The default is in the user's own space (XDG data home), never next to the repository."""
  monkeypatch.delenv(datasets.DATA_DIR_ENV, raising=False)
  monkeypatch.delenv("XDG_DATA_HOME", raising=False)
  home = pathlib.Path.home()
  assert datasets.default_data_dir() == home / ".local" / "share" / "flpjax"
  assert _common.data_dir() == (home / ".local" / "share" / "flpjax").resolve()
  repo_root = pathlib.Path(__file__).resolve().parents[1]
  assert "shared" not in datasets.default_data_dir().parts
  assert not datasets.default_data_dir().is_relative_to(repo_root.parent / "shared")
  monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
  assert _common.data_dir() == tmp_path.resolve() / "xdg" / "flpjax"
  # Nothing there: the message says where it looked and how to name another folder.
  with pytest.raises(datasets.SplitNotAvailableError, match=r"xdg/flpjax/omniglot.*"
                     r"images_background\.zip"):
    datasets.load_split("omniglot", "train", cache_dir=tmp_path / "cache")
  (tmp_path / "omniglot").mkdir()
  monkeypatch.setenv(datasets.DATA_DIR_ENV, str(tmp_path))
  assert datasets.dataset_dir("omniglot") == tmp_path.resolve() / "omniglot"
  # A data set's own folder is accepted too.
  assert datasets.dataset_dir("mini_imagenet") == tmp_path.resolve()
  monkeypatch.setenv(datasets.CACHE_DIR_ENV, str(tmp_path / "c"))
  assert _common.cache_dir() == tmp_path.resolve() / "c"


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(dataset="mnist", split="train"), ValueError, r"'mnist'.*'omniglot', 'mini_imagenet'"),
        (dict(dataset="omniglot", split="val"), ValueError, r"split 'val'.*'train', 'test'"),
        (dict(dataset="mini_imagenet", split="valid"), ValueError, r"'train', 'val', 'test'"),
        (dict(dataset="omniglot", split="train", image_size=4), ValueError, r"\[8, 512\], got 4"),
        (dict(dataset="omniglot", split="train", image_size=1000), ValueError, r"got 1000"),
        (dict(dataset="omniglot", split="train", image_size=28.0), TypeError, r"int"),
    ],
)
def test_load_split_validates_arguments(kwargs, error, match, tmp_path):
  with pytest.raises(error, match=match):
    datasets.load_split(data_dir=tmp_path, cache_dir=tmp_path, **kwargs)


def test_normalize():
  x = np.array([0, 51, 255], np.uint8).reshape(1, 1, 3, 1)
  np.testing.assert_allclose(datasets.normalize(x, "omniglot").ravel(), [0, 0.2, 1])
  assert datasets.normalize(x, "omniglot").dtype == np.float32
  rgb = np.full((2, 2, 3), 255, np.uint8)
  y = datasets.normalize(rgb, "mini_imagenet")
  assert y.dtype == np.float32
  expected = (1 - np.array([0.485, 0.456, 0.406])) / [0.229, 0.224, 0.225]
  np.testing.assert_allclose(y[0, 0], expected, rtol=1e-6)
  with pytest.raises(ValueError, match=r"\[..., H, W, 3\]"):
    datasets.normalize(x, "mini_imagenet")
  with pytest.raises(TypeError, match="uint8"):
    datasets.normalize(x.astype(np.float32), "omniglot")


# ------------------------------------------------------------ Omniglot


@needs_omniglot
def test_omniglot_available_and_verify():
  assert datasets.available_splits("omniglot") == ["train", "test"]
  sums = datasets.verify("omniglot")
  assert sums["images_background.npz"] == (
      "8bf84167413cd00beacdce3fe582f780ab538d8dbef043a6d688f2527bbce199"
  )
  assert set(sums) == {"images_background.npz", "images_evaluation.npz", "alphabets.tsv"}


@needs_omniglot
def test_omniglot_counts_shapes_values(omniglot):
  assert omniglot["train"].shape == (963, 20, SIZE, SIZE, 1)
  assert omniglot["test"].shape == (660, 20, SIZE, SIZE, 1)
  for images in omniglot.values():
    assert images.dtype == np.uint8
    assert not images.flags.writeable
    # Mostly white paper (255) with dark strokes.
    assert 0.6 < np.mean(images == 255) < 0.95
    assert images.min() == 0
    darkest = images.reshape(-1, SIZE * SIZE).min(axis=1)
    assert np.all(darkest < 255)  # no blank drawing
    assert np.mean(darkest < 128) > 0.99  # strokes are dark (a few thin ones fade at 28x28)
    x = datasets.normalize(images[:10], "omniglot")
    assert x.dtype == np.float32 and x.min() == 0.0 and x.max() == 1.0


@needs_omniglot
def test_omniglot_class_order(omniglot_builder):
  sorted_background = sorted(a for s, a, *_ in _alphabets() if s == "background")
  assert sorted_background[0] == "Alphabet_of_the_Magi"
  # The npz rows are in official id order, which is not sorted by name.
  assert _alphabets()[0][1] == "Arcadian"
  expected = _expected_omniglot_order()
  got = []
  for split, offset in (("train", 0), ("test", 963)):
    for label, ex in enumerate(_first_examples(omniglot_builder, split, 20)):
      assert (ex["label"], ex["global_label"], ex["image_index"]) == (label, offset + label, 0)
      got.append((ex["alphabet"].decode(), int(ex["character_number"]), int(ex["character_id"])))
  assert got == expected
  assert got[0] == ("Alphabet_of_the_Magi", 1, 709)
  assert got[963] == ("Tifinagh", 55, 964)  # the one background class in test
  assert got[964] == ("Angelic", 1, 965)


@needs_omniglot
def test_omniglot_train_and_test_classes_are_disjoint(omniglot_builder):
  ids = {
      split: {int(ex["character_id"]) for ex in _first_examples(omniglot_builder, split, 20)}
      for split in ("train", "test")
  }
  assert len(ids["train"]) == 963 and len(ids["test"]) == 660
  assert not ids["train"] & ids["test"]
  assert ids["train"] | ids["test"] == set(range(1, 1624))


@needs_omniglot
@pytest.mark.parametrize(
    "split, label, index", [("train", 0, 0), ("train", 500, 7), ("test", 0, 19), ("test", 659, 3)]
)
def test_omniglot_images_match_pil_bilinear(omniglot, split, label, index):
  character_id = _expected_omniglot_order()[label + (963 if split == "test" else 0)][2]
  drawing = _npz_drawing(character_id, index).astype(np.uint8) * 255
  expected = _pil_bilinear(drawing, SIZE)
  np.testing.assert_array_equal(omniglot[split][label, index, ..., 0], expected)
  assert len(np.unique(expected)) > 2  # bilinear gives grey edges


@needs_omniglot
def test_omniglot_preprocess_84_is_pil_bilinear():
  drawings = np.stack([_npz_drawing(709, j) for j in range(3)])
  out = datasets.omniglot.preprocess(drawings, 84)
  assert out.shape == (3, 84, 84, 1) and out.dtype == np.uint8
  for j in range(3):
    expected = _pil_bilinear(drawings[j].astype(np.uint8) * 255, 84)
    np.testing.assert_array_equal(out[j, ..., 0], expected)


@needs_omniglot
def test_omniglot_reload_is_fast_and_tf_free(omniglot, cache):
  datasets.clear_memory_cache()
  start = time.perf_counter()
  again = datasets.load_split("omniglot", "train", cache_dir=cache, image_size=SIZE)
  assert time.perf_counter() - start < 2.0
  np.testing.assert_array_equal(again, omniglot["train"])
  assert datasets.load_split("omniglot", "train", cache_dir=cache, image_size=SIZE) is again
  assert "tensorflow" not in sys.modules
  # The prepared data is readable with plain tfds too.
  source = tfds.data_source("flpjax_omniglot/28x28", data_dir=cache, split="test", download=False)
  assert len(source) == 660 * 20
  np.testing.assert_array_equal(source[45]["image"], omniglot["test"][2, 5])


def _copy_omniglot(tmp_path: pathlib.Path, *names: str) -> pathlib.Path:
  root = tmp_path / "omniglot"
  root.mkdir()
  for name in names:
    shutil.copy(OMNIGLOT_DIR / name, root / name)
  return root


@needs_omniglot
@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_omniglot_corrupt_file(tmp_path, damage):
  root = _copy_omniglot(tmp_path, "images_background.npz", "alphabets.tsv", "SHA256SUMS")
  path = root / "images_background.npz"
  data = bytearray(path.read_bytes())
  if damage == "flip":
    data[len(data) // 2] ^= 0xFF
  else:
    data = data[: len(data) // 3]
  path.write_bytes(bytes(data))
  sha = "8bf84167413cd00beacdce3fe582f780ab538d8dbef043a6d688f2527bbce199"
  pattern = rf"images_background\.npz.*expected {sha}"
  with pytest.raises(datasets.ChecksumError, match=pattern):
    datasets.load_split("omniglot", "train", **_tmp_kwargs(tmp_path))
  with pytest.raises(datasets.DataError, match=pattern):
    datasets.verify("omniglot", data_dir=tmp_path)


@needs_omniglot
def test_omniglot_unreadable_file_listed_in_sums(tmp_path):
  """A file whose SHA256SUMS entry matches but whose content is wrong."""
  root = _copy_omniglot(tmp_path, "alphabets.tsv")
  bad = np.zeros((3, 20, 105, 105), bool)
  np.savez(root / "images_background.npz", images=bad, labels=np.zeros((3, 20), np.int64))
  digest = hashlib.sha256((root / "images_background.npz").read_bytes()).hexdigest()
  (root / "SHA256SUMS").write_text(f"{digest}  images_background.npz\n")
  pattern = r"images_background\.npz.*bool \[964, 20, 105, 105\]"
  with pytest.raises(datasets.FormatError, match=pattern):
    datasets.verify("omniglot", data_dir=tmp_path)


@needs_omniglot
def test_omniglot_missing_files(tmp_path):
  root = _copy_omniglot(tmp_path, "images_background.npz", "alphabets.tsv")
  assert datasets.available_splits("omniglot", data_dir=tmp_path) == ["train"]
  pattern = r"images_evaluation\.npz.*Available splits: \['train'\]"
  with pytest.raises(datasets.SplitNotAvailableError, match=pattern):
    datasets.load_split("omniglot", "test", **_tmp_kwargs(tmp_path))
  (root / "alphabets.tsv").unlink()
  assert datasets.available_splits("omniglot", data_dir=tmp_path) == []
  with pytest.raises(datasets.MissingFileError, match=r"alphabets\.tsv"):
    datasets.load_split("omniglot", "train", **_tmp_kwargs(tmp_path))
  with pytest.raises(datasets.MissingFileError, match=r"alphabets\.tsv"):
    datasets.verify("omniglot", data_dir=tmp_path)


@needs_omniglot
@pytest.mark.slow
def test_omniglot_png_layout_and_reverification(tmp_path, omniglot, monkeypatch):
  """The official PNG layout gives the same train split; changed files are re-checked."""
  folder = tmp_path / "omniglot" / "images_background"
  with np.load(OMNIGLOT_DIR / "images_background.npz") as archive:
    images = archive["images"]
  for set_name, alphabet, first, last in _alphabets():
    if set_name != "background":
      continue
    for k in range(first, last + 1):
      character = folder / alphabet / f"character{k - first + 1:02d}"
      character.mkdir(parents=True)
      for j in range(20):
        PIL.Image.fromarray(images[k - 1, j]).save(character / f"{k:04d}_{j + 1:02d}.png")
  listed = "images_background/Alphabet_of_the_Magi/character01/0709_01.png"
  digest = hashlib.sha256((tmp_path / "omniglot" / listed).read_bytes()).hexdigest()
  (tmp_path / "omniglot" / "SHA256SUMS").write_text(f"{digest}  {listed}\n")
  kwargs = _tmp_kwargs(tmp_path)

  assert datasets.available_splits("omniglot", data_dir=tmp_path) == ["train"]
  train = datasets.load_split("omniglot", "train", **kwargs)
  np.testing.assert_array_equal(train, omniglot["train"])
  sums = datasets.verify("omniglot", data_dir=tmp_path)
  assert list(sums) == ["images_background/"]

  # Unchanged sources: nothing is hashed again.
  def no_hashing(path):
    raise AssertionError(f"{path} hashed again")

  monkeypatch.setattr(_common, "sha256_file", no_hashing)
  datasets.clear_memory_cache()
  np.testing.assert_array_equal(datasets.load_split("omniglot", "train", **kwargs), train)
  monkeypatch.undo()

  # A changed drawing (new content, new mtime) is prepared again.
  changed = folder / "Alphabet_of_the_Magi" / "character01" / "0709_02.png"
  PIL.Image.fromarray(~images[708, 1]).save(changed)
  os.utime(changed, ns=(0, 0))
  again = datasets.load_split("omniglot", "train", **kwargs)
  inverted = np.where(images[708, 1], 0, 255).astype(np.uint8)
  np.testing.assert_array_equal(again[0, 1, ..., 0], _pil_bilinear(inverted, SIZE))
  assert not np.array_equal(again[0, 1], train[0, 1])
  np.testing.assert_array_equal(again[1:], train[1:])

  # A file listed in SHA256SUMS is checked again once it changes.
  (tmp_path / "omniglot" / listed).write_bytes(b"not a png")
  with pytest.raises(datasets.ChecksumError, match=r"0709_01\.png.*expected " + digest):
    datasets.load_split("omniglot", "train", **kwargs)

  # The official zip, unextracted: the folder's drawings, read from the zip.
  zipped = tmp_path / "zipped" / "omniglot"
  zipped.mkdir(parents=True)
  with zipfile.ZipFile(zipped / "images_background.zip", "w", strict_timestamps=False) as archive:
    for path in sorted(folder.rglob("*.png")):
      archive.write(path, path.relative_to(folder.parent).as_posix())
  assert datasets.available_splits("omniglot", data_dir=zipped) == ["train"]
  layout = datasets.omniglot.find_layout(zipped)
  assert list(layout.sources()) == ["images_background.zip"]
  image_set = datasets.omniglot.read_sets(layout)["background"]
  assert len(image_set.characters) == 964
  by_id = {c.character_id: c for c in image_set.characters}
  assert by_id[710].name == "Alphabet_of_the_Magi/character02"
  np.testing.assert_array_equal(image_set.images(by_id[710]), images[709].astype(np.uint8) * 255)
  with pytest.raises(datasets.FormatError, match=r"images_background\.zip: member .*0709_01\.png"
                     r" is not a readable PNG"):
    image_set.images(by_id[709])  # the file made unreadable above, zipped as it is


# ------------------------------------------------------------ mini-ImageNet


@pytest.fixture(scope="session")
def mini_val(cache) -> np.ndarray:
  return datasets.load_split("mini_imagenet", "val", cache_dir=cache)


def _csv_rows(split: str) -> list[tuple[str, str]]:
  with open(MINI_DIR / "splits" / f"{split}.csv", newline="") as f:
    return [tuple(row) for row in list(csv.reader(f))[1:]]


@needs_mini
def test_mini_imagenet_available_splits():
  expected = [s for s in ("train", "val", "test") if (MINI_DIR / f"{s}.tar").is_file()]
  assert datasets.available_splits("mini_imagenet") == expected


@needs_mini
def test_mini_imagenet_val(mini_val, cache):
  assert mini_val.shape == (16, 600, 84, 84, 3) and mini_val.dtype == np.uint8
  rows = _csv_rows("val")
  with tarfile.open(MINI_DIR / "val.tar") as tar:
    for label, index in [(0, 0), (0, 599), (15, 123)]:
      filename, wnid = rows[600 * label + index]
      data = tar.extractfile(f"val/{wnid}/{filename}").read()
      decoded = np.asarray(PIL.Image.open(io.BytesIO(data)))
      np.testing.assert_array_equal(mini_val[label, index], decoded)
  x = datasets.normalize(mini_val[:2, :50], "mini_imagenet")
  assert x.dtype == np.float32
  assert x.min() >= (0 - 0.485) / 0.229 - 1e-5 and x.max() <= (1 - 0.406) / 0.225 + 1e-5
  assert abs(float(x.mean())) < 0.5
  builder = datasets.prepare("mini_imagenet", cache_dir=cache)
  wnids = [ex["wnid"].decode() for ex in _first_examples(builder, "val", 600)]
  assert wnids == list(dict.fromkeys(wnid for _, wnid in rows))


@needs_mini
def test_mini_imagenet_test_split(cache, mini_val):
  if not (MINI_DIR / "test.tar").is_file():
    pytest.skip(f"{MINI_DIR / 'test.tar'} is absent")
  images = datasets.load_split("mini_imagenet", "test", cache_dir=cache)
  assert images.shape == (20, 600, 84, 84, 3) and images.dtype == np.uint8
  builder = datasets.prepare("mini_imagenet", cache_dir=cache)
  wnids = {
      split: {ex["wnid"].decode() for ex in _first_examples(builder, split, 600)}
      for split in ("val", "test")
  }
  assert not wnids["val"] & wnids["test"]


@needs_mini
def test_mini_imagenet_train_split(cache):
  train_tar = MINI_DIR / "train.tar"
  if not train_tar.is_file():
    pattern = r"train\.tar.*Available splits: \['val', 'test'\]"
    with pytest.raises(datasets.SplitNotAvailableError, match=pattern):
      datasets.load_split("mini_imagenet", "train", cache_dir=cache)
    pytest.skip(f"{train_tar} is absent: the train split cannot be tested")
  images = datasets.load_split("mini_imagenet", "train", cache_dir=cache)
  assert images.shape == (64, 600, 84, 84, 3)


def _mini_copy(tmp_path: pathlib.Path) -> pathlib.Path:
  root = tmp_path / "mini-imagenet"
  (root / "splits").mkdir(parents=True)
  shutil.copy(MINI_DIR / "splits" / "val.csv", root / "splits" / "val.csv")
  return root


@needs_mini
def test_mini_imagenet_missing_split(tmp_path):
  root = _mini_copy(tmp_path)
  (root / "val.tar").symlink_to(MINI_DIR / "val.tar")
  assert datasets.available_splits("mini_imagenet", data_dir=tmp_path) == ["val"]
  for split in ("train", "test"):
    pattern = rf"{split}\.(csv|tar).*Available splits: \['val'\]"
    with pytest.raises(datasets.SplitNotAvailableError, match=pattern):
      datasets.load_split("mini_imagenet", split, **_tmp_kwargs(tmp_path, 84))


@needs_mini
def test_mini_imagenet_truncated_tar(tmp_path):
  root = _mini_copy(tmp_path)
  with open(MINI_DIR / "val.tar", "rb") as f:
    (root / "val.tar").write_bytes(f.read(1 << 20))
  sha = "534835d54b93a32f13bf92c01d7e543dca56db16dd293de35b96395dc39b35ff"
  with pytest.raises(datasets.ChecksumError, match=rf"val\.tar.*expected {sha}"):
    datasets.load_split("mini_imagenet", "val", **_tmp_kwargs(tmp_path, 84))


@needs_mini
def test_mini_imagenet_image_folder_resized(tmp_path, mini_val):
  """The `images/` folder layout, at a size that needs resizing."""
  root = _mini_copy(tmp_path)
  (root / "images").mkdir()
  with tarfile.open(MINI_DIR / "val.tar") as tar:
    for member in tar:
      if member.isfile():
        name = pathlib.Path(member.name).name
        (root / "images" / name).write_bytes(tar.extractfile(member).read())
  images = datasets.load_split("mini_imagenet", "val", **_tmp_kwargs(tmp_path, 32))
  assert images.shape == (16, 600, 32, 32, 3)
  for label, index in [(0, 0), (9, 311)]:
    np.testing.assert_array_equal(images[label, index], _pil_bilinear(mini_val[label, index], 32))
  filename, _ = _csv_rows("val")[5]
  (root / "images" / filename).unlink()
  with pytest.raises(datasets.MissingFileError, match=filename):
    datasets.load_split("mini_imagenet", "val", **_tmp_kwargs(tmp_path, 32))
