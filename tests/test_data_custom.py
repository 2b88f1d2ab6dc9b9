"""A few-shot data set of your own, and every input checked before training.

Point 9: a user's own data set could not be named from the command line
(``config.task='mine'`` was refused), needed ``dataset='omniglot'`` or
``'mini_imagenet'`` for its normalisation, had a fixed test query pool, and its
one-channel images were silently made three-channel. Point 1: a sweep on
mini-ImageNet without ``val.tar`` meta-trained, evaluated and wrote checkpoints
before stopping on the missing split. Small generated image folders; the
binaries run side by side.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import PIL.Image
import pytest

from image_folders import make_folder
from flpjax import config as config_lib
from flpjax import datasets
from flpjax.tasks import fewshot

REPO = pathlib.Path(__file__).resolve().parents[1]
MINI_DIR = datasets.dataset_dir("mini_imagenet")




TINY_CONFIG = '''
from flpjax import config as config_lib


def get_config():
  c = config_lib.base_config()
  c.task = "custom"  # train/ and test/ under --config.fewshot.data_dir
  c.custom.channels = 1
  c.custom.mean = (0.5,)
  c.custom.std = (0.25,)
  c.fewshot.image_size = 12
  c.fewshot.ways = 3
  c.fewshot.shots = 2
  c.fewshot.queries_per_class = 2
  c.fewshot.test_pool = 3
  c.net.strides = (2, 2)
  c.net.channels = 8
  c.net.hidden = 16
  c.net.readout = 8
  c.plastic_layers = 2
  c.flp.signal = "target"
  c.flp.clamp_readout = True
  c.flp.init_beta = 1.0
  c.meta.lr.beta = 0.0
  c.meta.steps = 4
  c.eval.lifetimes = 4
  c.eval.batch = 2
  c.checkpoint_every = 2
  c.log_every = 2
  return c
'''


def _config(tmp_path: pathlib.Path, **fields):
  namespace = {}
  exec(TINY_CONFIG, namespace)  # pylint: disable=exec-used
  c = namespace["get_config"]()
  c.fewshot.data_dir = str(tmp_path / "mine")
  for path, value in fields.items():
    config_lib.set_field(c, path.replace("__", "."), value)
  return c


@pytest.fixture
def mine(tmp_path) -> pathlib.Path:
  """train/ (6 classes x 8 grey images) and test/ (4 x 8) of a data set of one's own."""
  make_folder(tmp_path / "mine" / "train", classes=6, seed=1)
  make_folder(tmp_path / "mine" / "test", classes=4, seed=2)
  return tmp_path / "mine"


def test_folder_mismatches_are_refused_naming_class_and_count(tmp_path):
  root = make_folder(tmp_path / "a")
  (root / "class_03" / "005.png").unlink()
  with pytest.raises(datasets.FormatError,
                     match=r"class 'class_03' has 7 images, expected 8 as the others"):
    datasets.load_images(root, image_size=12, cache_dir=tmp_path / "cache")
  root = make_folder(tmp_path / "b")
  PIL.Image.new("RGB", (12, 12)).save(root / "class_02" / "004.png")
  with pytest.raises(datasets.FormatError, match=r"004\.png: class 'class_02' has an image with "
                     r"3 channel\(s\) \(PIL mode RGB\), expected 1"):
    datasets.load_images(root, image_size=12, channels=1, cache_dir=tmp_path / "cache")
  # Grey images are never silently made three-channel.
  root = make_folder(tmp_path / "c")
  with pytest.raises(datasets.FormatError, match=r"class 'class_00' has an image with 1 "
                     r"channel\(s\) \(PIL mode L\), expected 3.*--config.custom.channels"):
    datasets.load_images(root, image_size=12, channels=3, cache_dir=tmp_path / "cache")
  images, classes = datasets.load_images(root, image_size=12, cache_dir=tmp_path / "cache")
  assert images.shape == (6, 8, 12, 12, 1) and classes == tuple(f"class_{i:02d}" for i in range(6))
  # Arrays: the same checks.
  grey = np.zeros((8, 12, 12), np.uint8)
  with pytest.raises(datasets.FormatError, match=r"class 'b' has 7 images, expected 8"):
    datasets.from_arrays({"a": grey, "b": grey[:7], "c": grey})
  with pytest.raises(datasets.FormatError, match=r"class '1' has images with 3 channel\(s\), "
                     r"expected 1"):
    datasets.from_arrays([grey, np.zeros((8, 12, 12, 3), np.uint8)])
  out, names = datasets.from_arrays({"a": grey, "b": grey}, image_size=8)
  assert out.shape == (2, 8, 8, 8, 1) and names == ("a", "b")


def test_custom_task_from_a_config(mine, tmp_path):
  """Named from a config: its splits (a folder, an array file), normalisation and query pool."""
  test = datasets.load_images(mine / "test", image_size=12, channels=1,
                              cache_dir=tmp_path / "c0")[0]
  np.save(mine / "test.npy", test)
  c = _config(tmp_path, custom__test="test.npy")
  config_lib.validate(c)
  train_task, test_task = config_lib.make_tasks(c)
  assert train_task.data.shape == (6, 8, 12, 12, 1)
  assert test_task.data.shape == (4, 8, 12, 12, 1)
  ep = jax.jit(test_task.sample)(jax.random.key(0), test_task.data)
  assert ep.xs.shape == (6, 1, 12, 12, 1) and ep.xq.shape == (3 * 3, 12, 12, 1)  # test_pool=3
  x = np.asarray(ep.xq)
  raw = np.rint((x * 0.25 + 0.5) * 255)  # (x / 255 - 0.5) / 0.25, undone
  assert raw.min() >= 0 and raw.max() <= 255 and x.min() < -1 and x.max() > 1
  assert set(raw.ravel().tolist()) <= set(test[:, 4:7].ravel().tolist())  # queries: images 4..6
  # Too few images for the shots: one line naming the split, the class and its count.
  c = _config(tmp_path, fewshot__shots=5, fewshot__queries_per_class=4)
  with pytest.raises(datasets.DataError, match=r"custom.train=.*mine/train: class 'class_00' "
                     r"has 8 images \(as every class\), too few for fewshot.shots=5 \+ "
                     r"fewshot.queries_per_class=4 = 9 per class"):
    config_lib.make_tasks(c)
  c = _config(tmp_path, fewshot__ways=5)
  with pytest.raises(datasets.DataError, match=r"custom.test=.*test.*: 4 classes, too few for "
                     r"fewshot.ways=5"):
    config_lib.make_tasks(c)
  # A sweep needs validation classes, checked before any split is loaded.
  c = _config(tmp_path, runs=2, sweep__lrs=(1e-2, 1e-3))
  with pytest.raises(config_lib.ConfigError, match=r"config.custom.val='': expected validation"):
    config_lib.validate(c)
  c = _config(tmp_path, runs=2, sweep__lrs=(1e-2, 1e-3), custom__val="val")
  config_lib.validate(c)
  with pytest.raises(datasets.MissingFileError, match=r"mine/val does not exist"):
    config_lib.make_tasks(c)


def test_standard_data_sets_take_a_test_pool():
  """The test query pool was fixed at 5 (Omniglot) or 30 (mini-ImageNet) per class."""
  images = np.zeros((6, 20, 4, 4, 1), np.uint8)
  images[:, :, 0, 0, 0] = np.arange(20)
  task = fewshot.make_test_task(images, dataset="omniglot", support_pool=10, test_pool=4)
  ep = jax.jit(task.sample)(jax.random.key(1), task.data)
  assert ep.xq.shape[0] == 5 * 4
  assert sorted(set(np.rint(np.asarray(ep.xq)[:, 0, 0, 0] * 255).astype(int))) == [10, 11, 12, 13]
  c = config_lib.base_config()
  c.task = "omniglot"
  c.fewshot.image_size = 28
  c.net.strides = (2, 2, 2)
  c.fewshot.test_pool = 6
  with pytest.raises(config_lib.ConfigError, match=r"config.fewshot.test_pool=6: expected at "
                     r"most 5 \(support pool 15"):
    config_lib.validate(c)


def _run(args, env=None):
  return subprocess.run([sys.executable, "experiments/train.py"] + [str(a) for a in args],
                        cwd=REPO, capture_output=True, text=True, check=False,
                        env={**os.environ, **(env or {})})


def _mini_without_val(tmp_path: pathlib.Path) -> pathlib.Path | None:
  if not all((MINI_DIR / f).is_file() for f in ("train.tar", "test.tar", "splits/val.csv")):
    return None
  root = tmp_path / "mini" / "mini-imagenet"
  (root / "splits").mkdir(parents=True)
  for name in ("train.tar", "test.tar", "splits/train.csv", "splits/val.csv", "splits/test.csv"):
    (root / name).symlink_to(MINI_DIR / name)
  return root


def test_train_py_checks_every_split_and_trains_on_a_folder(mine, tmp_path):
  """train.py on a generated folder, named from the command line; a sweep whose validation
  split is missing stops before anything is prepared or compiled."""
  config_file = tmp_path / "tiny.py"
  config_file.write_text(TINY_CONFIG)
  env = {datasets.CACHE_DIR_ENV: str(tmp_path / "cache")}
  mini = _mini_without_val(tmp_path)
  cases = {
      "trains": [f"--config={config_file}", f"--workdir={tmp_path / 'run'}",
                 f"--config.fewshot.data_dir={mine}"],
  }
  if mini is not None:
    cases["sweep without val.tar"] = [
        "--config=experiments/configs/fewshot.py:dataset=mini_imagenet,row=flp2,scale=reduced,"
        "sweep=true", f"--workdir={tmp_path / 'sweep'}", f"--config.fewshot.data_dir={mini}"]
  with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
    procs = dict(zip(cases, pool.map(lambda args: _run(args, env), cases.values())))

  proc = procs["trains"]
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads((tmp_path / "run" / "eval.json").read_text())
  assert result["step"] == 4 and 0.0 <= result["accuracy"] <= 1.0
  assert result["lifetimes"] == 4
  saved = json.loads((tmp_path / "run" / "config.json").read_text())
  assert saved["task"] == "custom" and saved["fewshot"]["test_pool"] == 3

  def one_line_error(proc, message):
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert lines[-1].startswith("error: ") and message in lines[-1], lines[-1]

  if mini is None:
    pytest.skip(f"mini-ImageNet train.tar/test.tar not in {MINI_DIR}: sweep case not run")
  proc = procs["sweep without val.tar"]
  one_line_error(proc, f"mini_imagenet split 'val' is not available in {mini}: missing "
                 f"{mini / 'val.tar'}")
  assert not (tmp_path / "sweep" / "checkpoints").exists()  # it stopped before training
  assert not (tmp_path / "sweep" / "metrics.jsonl").exists()
  assert not (tmp_path / "cache" / "flpjax_mini_imagenet").exists()  # nothing even prepared


def test_runs_a_run_starts_from_are_checked_before_compiling(tmp_path):
  """The workdirs a new run reads from (init_ff_from, extend_from), checked by
  train_and_evaluate before it compiles anything (not when it resumes)."""
  from flpjax import train  # pylint: disable=g-import-not-at-top
  c = config_lib.base_config()  # sine: no data files
  c.net.widths = (8, 8, 8)
  (tmp_path / "untrained").mkdir()
  (tmp_path / "untrained" / "config.json").write_text(c.to_json())
  for path, message in ((tmp_path / "none", "none: no such directory"),
                        (tmp_path / "untrained", "no checkpoint in")):
    c.init_ff_from = str(path)
    with pytest.raises(config_lib.ConfigError, match=f"config.init_ff_from=.*{message}"):
      train.train_and_evaluate(c, str(tmp_path / "run"))
    assert not (tmp_path / "run" / "checkpoints").exists() or not any(
        (tmp_path / "run" / "checkpoints").iterdir())
