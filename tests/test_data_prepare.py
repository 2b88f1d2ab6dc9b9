"""Preparation that is safe to run twice at once and to interrupt, matched by content.

Each test reproduces one point of the data layer's former defects as they were, and checks that it is
gone: two processes preparing one fresh cache (one used to fail with
FileExistsError), a SIGKILL during preparation (it used to leave an
`incomplete.*` folder forever), a corrupt copy of the sources (it used to
delete the good prepared data before its checksum failed), identical copies
with other mtimes (they used to prepare again on every switch), and standard
tensorflow-datasets use without TensorFlow. The two-process and kill tests use
a tiny generated image folder (the `flpjax_folder` builder, the same
preparation code as Omniglot's and mini-ImageNet's).
"""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import PIL.Image
import pytest
import tensorflow_datasets as tfds

from image_folders import make_folder
from flpjax import datasets
from flpjax.datasets import _common
from flpjax.datasets import folder as folder_lib

OMNIGLOT_DIR = datasets.dataset_dir("omniglot")
SIZE = 28
needs_omniglot = pytest.mark.skipif(
    not (OMNIGLOT_DIR / "images_background.npz").is_file(),
    reason=f"Omniglot data not found in {OMNIGLOT_DIR} (set FLPJAX_DATA_DIR)")
REPO = pathlib.Path(__file__).resolve().parents[1]




def _config_dir(cache: pathlib.Path, root: pathlib.Path, size=12, channels=1) -> pathlib.Path:
  return cache / "flpjax_folder" / folder_lib.builder_config(root.resolve(), size, channels).name


_SCRIPT = textwrap.dedent('''
    import pathlib, sys, time
    import numpy as np
    from flpjax.datasets import folder
    root, cache, ready, go, out, delay = sys.argv[1:7]
    read = folder.read_image
    def slow(*args, **kwargs):  # widens the window in which both processes prepare
      pathlib.Path(ready + ".generating").touch()
      time.sleep(float(delay))
      return read(*args, **kwargs)
    folder.read_image = slow
    prepare = folder.Folder.download_and_prepare
    def counted(self, *args, **kwargs):
      print("preparing", flush=True)
      return prepare(self, *args, **kwargs)
    folder.Folder.download_and_prepare = counted
    pathlib.Path(ready).touch()
    while not pathlib.Path(go).exists():
      time.sleep(0.005)
    images, _ = folder.load_images(root, image_size=12, channels=1, cache_dir=cache)
    np.save(out, images)
''')


def test_two_processes_prepare_one_fresh_cache(tmp_path):
  """Issue 21, point 2: one of them failed with FileExistsError; now one prepares, one waits."""
  root = make_folder(tmp_path / "data")
  cache = tmp_path / "cache"
  script = tmp_path / "prepare.py"
  script.write_text(_SCRIPT)
  go = tmp_path / "go"
  procs = []
  for i in range(2):
    args = [sys.executable, str(script), str(root), str(cache), str(tmp_path / f"ready{i}"),
            str(go), str(tmp_path / f"out{i}.npy"), "0.005"]
    procs.append(subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, cwd=REPO))
  deadline = time.time() + 120
  while not all((tmp_path / f"ready{i}").exists() for i in range(2)):
    assert time.time() < deadline and all(p.poll() is None for p in procs), [
        p.communicate() for p in procs if p.poll() is not None]
    time.sleep(0.01)
  go.touch()  # both start preparing the fresh cache at the same moment
  outs = [p.communicate(timeout=120) for p in procs]
  for p, (out, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
    assert "Traceback" not in err and "FileExistsError" not in err, err[-3000:]
  assert sum(out.count("preparing") for out, _ in outs) == 1  # the other reused its work
  a, b = np.load(tmp_path / "out0.npy"), np.load(tmp_path / "out1.npy")
  assert a.shape == (6, 8, 12, 12, 1)
  np.testing.assert_array_equal(a, b)
  assert not list(_config_dir(cache, root).glob("incomplete.*"))


def test_killed_preparation_is_cleaned_up(tmp_path):
  """Issue 21, point 3: a SIGKILL during preparation left an `incomplete.*` folder forever."""
  root = make_folder(tmp_path / "data")
  cache = tmp_path / "cache"
  script = tmp_path / "prepare.py"
  script.write_text(_SCRIPT)
  (tmp_path / "go").touch()
  proc = subprocess.Popen(
      [sys.executable, str(script), str(root), str(cache), str(tmp_path / "ready"),
       str(tmp_path / "go"), str(tmp_path / "out.npy"), "0.2"],
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
  config_dir = _config_dir(cache, root)
  deadline = time.time() + 120
  while not (tmp_path / "ready.generating").exists():  # tfds is generating examples
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    assert time.time() < deadline
    time.sleep(0.02)
  assert list(config_dir.glob("incomplete.*"))
  os.kill(proc.pid, signal.SIGKILL)
  proc.communicate()
  left = list(config_dir.glob("incomplete.*"))
  assert left and not (config_dir / "1.0.0").exists()  # what the killed process left
  images, classes = datasets.load_images(root, image_size=12, channels=1, cache_dir=cache)
  assert images.shape == (6, 8, 12, 12, 1) and classes[0] == "class_00"
  assert not any(p.exists() for p in left)
  assert sorted(p.name for p in config_dir.iterdir()) == [".flpjax.lock", "1.0.0"]
  expected = np.asarray(PIL.Image.open(root / "class_05" / "007.png"))
  np.testing.assert_array_equal(images[5, 7, ..., 0], expected)


def test_interrupted_replacement_puts_the_good_copy_back(tmp_path, monkeypatch):
  """A copy set aside while new sources were being prepared is put back, not lost."""
  root = make_folder(tmp_path / "data")
  cache = tmp_path / "cache"
  images, _ = datasets.load_images(root, image_size=12, channels=1, cache_dir=cache)
  config_dir = _config_dir(cache, root)
  os.rename(config_dir / "1.0.0", config_dir / "previous.1.0.0")  # as a kill would leave it

  def no_preparation(*args, **kwargs):
    raise AssertionError("prepared again")

  monkeypatch.setattr(folder_lib.Folder, "download_and_prepare", no_preparation)
  again, _ = datasets.load_images(root, image_size=12, channels=1, cache_dir=cache)
  np.testing.assert_array_equal(again, images)
  assert not (config_dir / "previous.1.0.0").exists()
  monkeypatch.undo()

  # New content whose preparation fails half-way: the good prepared copy is kept.
  image = root / "class_02" / "003.png"
  PIL.Image.fromarray(np.zeros((12, 12), np.uint8)).save(image)
  read = folder_lib.read_image

  def failing(path, *args):
    if path == image:
      raise datasets.FormatError(f"{path}: cannot be read (test)")
    return read(path, *args)

  monkeypatch.setattr(folder_lib, "read_image", failing)
  with pytest.raises(datasets.FormatError, match="cannot be read"):
    datasets.load_images(root, image_size=12, channels=1, cache_dir=cache)
  assert sorted(p.name for p in config_dir.iterdir()) == [".flpjax.lock", "1.0.0"]
  builder = folder_lib.Folder(config=folder_lib.builder_config(root.resolve(), 12, 1),
                              data_dir=cache)
  assert len(builder.as_data_source("images")) == 48  # the good copy is still there


def test_corrupt_folder_source_leaves_prepared_data(tmp_path):
  """Issue 21, point 4, on a folder with SHA256SUMS: a corrupt file is refused first."""
  root = make_folder(tmp_path / "data")
  cache = tmp_path / "cache"
  good = root / "class_01" / "002.png"
  digest = _common.sha256_file(good)
  (root / "SHA256SUMS").write_text(f"{digest}  class_01/002.png\n")
  images, _ = datasets.load_images(root, image_size=12, channels=1, cache_dir=cache)
  data = good.read_bytes()
  good.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
  prepared = _config_dir(cache, root) / "1.0.0"
  before = sorted(p.name for p in prepared.rglob("*"))
  with pytest.raises(datasets.ChecksumError, match=r"class_01/002\.png.*expected " + digest):
    datasets.load_images(root, image_size=12, channels=1, cache_dir=cache)
  assert sorted(p.name for p in prepared.rglob("*")) == before
  good.write_bytes(data)  # the good file back (a new mtime): reused, by content
  again, _ = datasets.load_images(root, image_size=12, channels=1, cache_dir=cache)
  np.testing.assert_array_equal(again, images)


@pytest.fixture(scope="module")
def omniglot_cache(data_cache):
  """Omniglot 28x28 prepared from the shared copy in the session's cache."""
  datasets.load_split("omniglot", "train", cache_dir=data_cache, image_size=SIZE)
  return data_cache


def _copy_omniglot(root: pathlib.Path, mtime_ns: int) -> pathlib.Path:
  root.mkdir(parents=True)
  for name in ("images_background.npz", "images_evaluation.npz", "alphabets.tsv"):
    shutil.copyfile(OMNIGLOT_DIR / name, root / name)
    os.utime(root / name, ns=(mtime_ns, mtime_ns))
  return root


def _forbid_preparation(monkeypatch):
  def prepared_again(*args, **kwargs):
    raise AssertionError("prepared again")
  monkeypatch.setattr(datasets.omniglot.Omniglot, "download_and_prepare", prepared_again)


@needs_omniglot
def test_corrupt_copy_does_not_delete_good_prepared_data(omniglot_cache, tmp_path, monkeypatch):
  """Issue 21, point 4: the good prepared data was deleted before the checksum failed."""
  copy = _copy_omniglot(tmp_path / "bad", 10**18)
  path = copy / "images_background.npz"
  data = bytearray(path.read_bytes())
  data[len(data) // 2] ^= 0xFF
  path.write_bytes(bytes(data))
  prepared = omniglot_cache / "flpjax_omniglot" / f"{SIZE}x{SIZE}" / "1.0.0"
  before = {p.name: p.stat().st_mtime_ns for p in prepared.iterdir()}
  with pytest.raises(datasets.ChecksumError, match=r"images_background\.npz is corrupt"):
    datasets.load_split("omniglot", "train", data_dir=copy, cache_dir=omniglot_cache,
                        image_size=SIZE)
  assert {p.name: p.stat().st_mtime_ns for p in prepared.iterdir()} == before
  _forbid_preparation(monkeypatch)
  datasets.clear_memory_cache()
  train = datasets.load_split("omniglot", "train", cache_dir=omniglot_cache, image_size=SIZE)
  assert train.shape == (963, 20, SIZE, SIZE, 1)


@needs_omniglot
def test_identical_copies_with_other_mtimes_share_prepared_data(omniglot_cache, tmp_path,
                                                                monkeypatch):
  """Issue 21, point 5: identical copies re-prepared on every switch (matched by mtime)."""
  first = _copy_omniglot(tmp_path / "a", 1_600_000_000 * 10**9)
  second = _copy_omniglot(tmp_path / "b", 1_700_000_000 * 10**9)
  _forbid_preparation(monkeypatch)
  hashed = []
  sha256_file = _common.sha256_file
  monkeypatch.setattr(_common, "sha256_file", lambda p: hashed.append(p) or sha256_file(p))
  arrays = []
  for copy in (first, second, first, second):
    datasets.clear_memory_cache()
    arrays.append(datasets.load_split("omniglot", "test", data_dir=copy,
                                      cache_dir=omniglot_cache, image_size=SIZE))
  for array in arrays[1:]:
    np.testing.assert_array_equal(array, arrays[0])
  # Each copy is hashed once, when first seen; after that its stats identify it.
  assert sorted(pathlib.Path(p).parent.name for p in hashed) == ["a"] * 3 + ["b"] * 3


def test_standard_tfds_use_without_tensorflow(tmp_path, monkeypatch, capsys):
  """Issue 21, points 6 and 7: download_and_prepare's default format needed TensorFlow, and
  tfds said it downloaded what it did not."""
  root = make_folder(tmp_path / "data", classes=3, per_class=4)
  cache = tmp_path / "cache"
  for name in ("flpjax_omniglot/28x28", "flpjax_mini_imagenet"):
    builder = tfds.builder(name, data_dir=cache)
    assert builder.info.file_format == tfds.core.FileFormat.ARRAY_RECORD
  config = folder_lib.builder_config(root.resolve(), 12, 1)
  builder = tfds.builder(f"flpjax_folder/{config.name}", data_dir=cache)
  builder.download_and_prepare()  # the default source: the config's folder
  out = capsys.readouterr()
  assert "ownload" not in out.out + out.err, out  # nothing is said to be downloaded
  source = tfds.data_source(f"flpjax_folder/{config.name}", split="images", data_dir=cache)
  assert len(source) == 12 and source[5]["image"].shape == (12, 12, 1)
  assert source[5]["class_name"] == b"class_01"
  assert "tensorflow" not in sys.modules
  # Without a manual directory and no data where the default points: one line, with the URLs.
  monkeypatch.setenv(datasets.DATA_DIR_ENV, str(tmp_path / "nothing"))
  with pytest.raises(datasets.MissingFileError, match=r"nothing/omniglot does not exist.*"
                     r"brendenlake/omniglot"):
    tfds.builder("flpjax_omniglot/28x28", data_dir=tmp_path / "c2").download_and_prepare()


@needs_omniglot
def test_tfds_load_is_refused_in_one_line(omniglot_cache):
  """Issue 21, point 6: tfds.load failed with a ModuleNotFoundError traceback (and with
  TensorFlow, tf.data cannot read array_record either)."""
  with pytest.raises(NotImplementedError) as error:
    tfds.load("flpjax_omniglot/28x28", split="test", data_dir=omniglot_cache, download=False)
  message = str(error.value)
  assert "\n" not in message and "tfds.data_source('flpjax_omniglot/28x28'" in message
  source = tfds.data_source("flpjax_omniglot/28x28", split="test", data_dir=omniglot_cache)
  assert len(source) == 660 * 20
  assert "tensorflow" not in sys.modules
