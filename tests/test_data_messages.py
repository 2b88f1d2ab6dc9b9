"""Bad-input messages that name the thing that is wrong.

Each case was reported as something else before: a CSV with an unknown class
as a corrupt CSV (no class named); the same CSV at the folder's root as "600
unexpected members" of the tar; a re-tarred `val.tar` holding the very images
of the standard one as corrupt (while the same images in a folder were
accepted). Works on copies of mini-ImageNet's validation split in tmp_path.
"""

from __future__ import annotations

import csv
import io
import pathlib
import tarfile

import pytest

from flpjax import datasets
from flpjax.datasets import mini_imagenet

MINI_DIR = datasets.dataset_dir("mini_imagenet")
needs_mini_val = pytest.mark.skipif(
    not (MINI_DIR / "val.tar").is_file(),
    reason=f"mini-ImageNet val.tar not found in {MINI_DIR} (set FLPJAX_DATA_DIR)")
UNKNOWN = "n99999999"


def _rows() -> list[list[str]]:
  with open(MINI_DIR / "splits" / "val.csv", newline="") as f:
    return list(csv.reader(f))


def _copy(tmp_path: pathlib.Path, rows, csv_at_root=False, tar=None) -> pathlib.Path:
  """A val-only copy: the CSV (in splits/ or at the root) and val.tar (the shared one)."""
  root = tmp_path / "mini-imagenet"
  path = root / "val.csv" if csv_at_root else root / "splits" / "val.csv"
  path.parent.mkdir(parents=True, exist_ok=True)
  root.mkdir(exist_ok=True)
  with open(path, "w", newline="") as f:
    csv.writer(f, lineterminator="\n").writerows(rows)
  (root / "val.tar").symlink_to(tar or MINI_DIR / "val.tar")
  return root


def _load(root, tmp_path):
  return datasets.load_split("mini_imagenet", "val", data_dir=root, cache_dir=tmp_path / "cache")


@needs_mini_val
def test_csv_with_an_unknown_class_names_its_row_and_class(tmp_path):
  rows = _rows()
  rows[6][1] = UNKNOWN  # row 7 of the file
  root = _copy(tmp_path, rows)
  with pytest.raises(datasets.FormatError) as error:
    _load(root, tmp_path)
  message = str(error.value)
  assert f"splits/val.csv, row 7: class {UNKNOWN} is not one of the 16 classes of the" in message
  assert "corrupt" not in message and "\n" not in message
  assert not (tmp_path / "cache" / "flpjax_mini_imagenet" / "84x84" / "1.0.0").exists()


@needs_mini_val
def test_csv_at_the_root_with_an_unknown_class_names_the_class_not_600_members(tmp_path):
  rows = _rows()
  first = rows[1][1]
  rows = [rows[0]] + [[name, UNKNOWN if wnid == first else wnid] for name, wnid in rows[1:]]
  root = _copy(tmp_path, rows, csv_at_root=True)
  with pytest.raises(datasets.FormatError) as error:
    _load(root, tmp_path)
  message = str(error.value)
  assert (f"val.tar: class {UNKNOWN} (val.csv rows 2..601) has no images in the tar (expected"
          f" members val/{UNKNOWN}/<filename>); its folder val/{first}/") in message
  assert "unexpected members" not in message and "\n" not in message


def _retar(source: pathlib.Path, target: pathlib.Path, change: str | None = None) -> None:
  """The same members in a new tar (other mtimes, so other bytes); `change`: one member altered."""
  with tarfile.open(source) as old, tarfile.open(target, "w", format=tarfile.PAX_FORMAT) as new:
    for member in old:
      data = old.extractfile(member).read() if member.isfile() else None
      member.mtime = 0
      if member.name == change:
        data = data[:-3] + bytes(b ^ 0xFF for b in data[-3:-1]) + data[-1:]
      new.addfile(member, io.BytesIO(data) if data is not None else None)


@needs_mini_val
def test_retarred_val_tar_with_identical_images_is_accepted(tmp_path):
  retarred = tmp_path / "retarred.tar"
  _retar(MINI_DIR / "val.tar", retarred)
  root = _copy(tmp_path / "a", _rows(), tar=retarred)
  record = mini_imagenet.verify_sources(mini_imagenet.find_layout(root))  # what `prepare` checks
  assert record["val.tar"]["sha256"] != mini_imagenet.KNOWN_SHA256["val.tar"]
  # One image changed: refused, naming its class, its members and its CSV rows.
  rows = _rows()
  name, wnid = rows[700]
  changed = tmp_path / "changed.tar"
  _retar(MINI_DIR / "val.tar", changed, change=f"val/{wnid}/{name}")
  root = _copy(tmp_path / "b", rows, tar=changed)
  with pytest.raises(datasets.ChecksumError) as error:
    mini_imagenet.verify_sources(mini_imagenet.find_layout(root))
  assert (f"the images of class {wnid} (members val/{wnid}/*, val.csv rows 602..1201) differ"
          in str(error.value))


def test_missing_omniglot_names_the_official_zips(tmp_path):
  (tmp_path / "omniglot").mkdir()
  assert datasets.available_splits("omniglot", data_dir=tmp_path) == []
  with pytest.raises(datasets.SplitNotAvailableError) as error:
    datasets.load_split("omniglot", "train", data_dir=tmp_path, cache_dir=tmp_path / "cache")
  message = str(error.value)
  assert (f"missing the official {tmp_path / 'omniglot' / 'images_background.zip'} (download"
          " https://github.com/brendenlake/omniglot/raw/master/python/images_background.zip)"
          f" or its extracted folder {tmp_path / 'omniglot' / 'images_background'}/") in message
  assert "downloaded" not in message
