"""Bad inputs to the binaries: one ``error:`` line naming the flag, field or file; status 2.

Every case runs a binary as a subprocess (the exit status is part of the
contract) and checks that stderr ends with the expected one-line message and
holds no traceback.
"""

import concurrent.futures
import contextlib
import glob
import os
import shutil
import subprocess
import sys

import pytest

from flpjax import datasets, train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OMNIGLOT = str(datasets.dataset_dir("omniglot"))  # the project's own lookup

TINY_CONFIG = '''
from flpjax import config as config_lib


def get_config():
  c = config_lib.base_config()
  c.net.widths = (16, 16, 16)
  c.plastic_layers = 1
  c.sine.n_functions = 3
  c.sine.steps_per_function = 3
  c.sine.batch_size = 4
  c.sine.queries_per_function = 4
  c.sine.pool_size = 20
  c.meta.steps = 4
  c.eval.lifetimes = 2
  c.eval.batch = 2
  c.checkpoint_every = 2
  c.log_every = 2
  return c
'''


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  """A config file and a trained run (checkpoints 2 and 4) to copy from."""
  root = tmp_path_factory.mktemp("inputs")
  config_file = root / "tiny.py"
  config_file.write_text(TINY_CONFIG)
  namespace = {}
  exec(TINY_CONFIG, namespace)  # pylint: disable=exec-used
  trained = root / "trained"
  train.train_and_evaluate(namespace["get_config"](), str(trained))
  return config_file, trained


@contextlib.contextmanager
def read_only(path):
  """Makes directory ``path`` read-only: chmod, or for root ``chattr +i``; else skips."""

  def writable():
    try:
      with open(os.path.join(path, ".probe"), "w"):
        pass
      os.remove(os.path.join(path, ".probe"))
      return True
    except OSError:
      return False

  os.chmod(path, 0o555)
  immutable = False
  try:
    if writable():  # root ignores permission bits
      immutable = subprocess.run(["chattr", "+i", str(path)], capture_output=True,
                                 check=False).returncode == 0
      if not immutable or writable():
        pytest.skip("no way to make a directory read-only for this user here "
                    "(root, and chattr +i is not available)")
    yield
  finally:
    if immutable:
      subprocess.run(["chattr", "-i", str(path)], check=False)
    os.chmod(path, 0o755)


def _run(binary, args, env=None):
  proc = subprocess.run([sys.executable, f"experiments/{binary}.py"] + [str(a) for a in args],
                        cwd=REPO, capture_output=True, text=True, check=False,
                        env={**os.environ, **(env or {})})
  return proc


def _check(proc, message, code=2):
  lines = proc.stderr.strip().splitlines()
  assert proc.returncode == code, proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
  assert lines[-1].startswith("error: ") and message in lines[-1], lines[-1]


def _copy(trained, tmp_path):
  run = tmp_path / "run"
  shutil.copytree(trained, run)
  return run


# Each case: (binary, arguments, expected part of the message). In arguments,
# {config} is the tiny config file, {new} a fresh workdir, {run} a copy of the
# trained run and {tmp} the test's directory.
CASES = {
    "value out of range": (
        "train", ["--config={config}", "--workdir={new}", "--config.flp.init_beta=1.5"],
        "error: config.flp.init_beta=1.5: expected a number in [0.0, 1.0]"),
    "unknown name": (
        "train", ["--config={config}", "--workdir={new}", "--config.task=cifar"],
        "config.task='cifar': expected one of 'sine', 'omniglot', 'mini_imagenet'"),
    "unknown config field": (
        "train", ["--config={config}", "--workdir={new}", "--config.meta.stpes=5"],
        'flag --config.meta.stpes=5: no such config field (Did you mean "steps" instead of '
        '"stpes"?)'),
    "flag typo": (
        "train", ["--config={config}", "--wrokdir={new}"],
        "Unknown command line flag 'wrokdir'"),
    "missing flag": (
        "train", ["--config={config}"], "flag --workdir=None: Flag --workdir must have a value"),
    "missing config file": (
        "train", ["--config={tmp}/nope.py", "--workdir={new}"],
        "nope.py: cannot load the config file ("),
    "value of the wrong type": (
        "train", ["--config={config}", "--workdir={new}", "--config.meta.steps=ten"],
        "flag --config.meta.steps=ten: invalid literal for int() with base 10: 'ten'"),
    "inconsistent fields": (
        "train", ["--config={config}", "--workdir={new}", "--config.sine.pool_size=2"],
        "config.sine.pool_size=2: expected 0 (fresh functions) or at least "
        "sine.n_functions=3"),
    "stray argument": (
        "train", ["--config={config}", "--workdir={new}", "steps=5"],
        "unexpected arguments ['steps=5']: every option is a --flag=value"),
    "workdir parent cannot be created": (
        "train", ["--config={config}", "--workdir={config}/run"],
        "tiny.py/run: cannot create it (Not a directory)"),
    "resume with another run's config": (
        "train", ["--config={config}", "--workdir={run}", "--config.seed=1",
                  "--config.meta.steps=8"],
        "its checkpoint (step 4) is of another run: config.seed (0 -> 1); resume with the run's "
        "config (only meta.steps,"),
    "init_ff_from a missing run": (
        "train", ["--config={config}", "--workdir={new}", "--config.init_ff_from={tmp}/none"],
        "none: no such directory"),
    "evaluate a missing workdir": (
        "evaluate", ["--workdir={tmp}/none"], "none: no such directory"),
    "evaluate a run without checkpoints": (
        "evaluate", ["--workdir={run}"], "checkpoints (train the run first)"),
    "evaluate a missing step": (
        "evaluate", ["--workdir={run}", "--step=3"],
        "--step=3: no such checkpoint in {run}/checkpoints (available: 2, 4)"),
    "evaluate zero lifetimes": (
        "evaluate", ["--workdir={run}", "--lifetimes=0"],
        "flag --lifetimes=0: 0 is not a positive integer"),
    "evaluate to a missing directory": (
        "evaluate", ["--workdir={run}", "--output={tmp}/none/eval.json"],
        "none/eval.json: cannot write it (No such file or directory)"),
    "evaluate a corrupt config.json": (
        "evaluate", ["--workdir={run}"], "config.json: not a config (JSONDecodeError"),
    "evaluate a corrupt checkpoint": (
        "evaluate", ["--workdir={run}"], "checkpoints/4: cannot restore this checkpoint ("),
    "plot a run without metrics": (
        "plot", ["--workdirs={tmp}", "--output={tmp}/c.png"],
        "metrics.jsonl: cannot read it (No such file or directory)"),
}


def _prepare(name, run):
  """Changes the copy of the trained run as the case needs."""
  if name == "evaluate a run without checkpoints":
    shutil.rmtree(run / "checkpoints")
  elif name == "evaluate a corrupt config.json":
    (run / "config.json").write_text('{"task": "sine", ')
  elif name == "evaluate a corrupt checkpoint":
    data = glob.glob(str(run / "checkpoints" / "4" / "state" / "**" / "d" / "*"), recursive=True)
    assert data
    for path in data:
      with open(path, "r+b") as f:
        f.truncate(7)


@pytest.fixture(scope="module")
def outcomes(setup, tmp_path_factory):
  """Every case of `CASES` run at once, as many binaries at a time as there are CPUs.

  Each binary spends its time starting Python and importing JAX, one CPU each, so
  the cases run side by side: ``{name: (completed process, paths of the case)}``.
  """
  config_file, trained = setup
  cases = {}
  for i, name in enumerate(CASES):
    tmp = tmp_path_factory.mktemp(f"case{i}")
    run = _copy(trained, tmp)
    _prepare(name, run)
    cases[name] = dict(config=config_file, new=tmp / "new", run=run, tmp=tmp)

  def one(name):
    binary, args, _ = CASES[name]
    return _run(binary, [a.format(**cases[name]) for a in args])

  with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
    procs = dict(zip(CASES, pool.map(one, CASES)))
  return {name: (procs[name], cases[name]) for name in CASES}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name, outcomes):
  proc, paths = outcomes[name]
  _check(proc, CASES[name][2].format(**paths))


def test_corrupt_checkpoint_metadata_on_resume(setup, tmp_path):
  config_file, trained = setup
  run = _copy(trained, tmp_path)
  # Every checkpoint unreadable (a corrupt latest one alone is set aside: test_resume).
  for step in ("2", "4"):
    (run / "checkpoints" / step / "run" / "metadata").write_text("{")
  proc = _run("train", [f"--config={config_file}", f"--workdir={run}"])
  _check(proc, f"{run}/checkpoints/4: cannot restore this checkpoint (")


def test_read_only_workdir(setup, tmp_path):
  config_file, trained = setup
  run = _copy(trained, tmp_path)
  with read_only(run):
    proc = _run("train", [f"--config={config_file}", f"--workdir={run}",
                          "--config.meta.steps=6"])
  _check(proc, f"--workdir={run}: not writable (")


@pytest.fixture
def omniglot_copy(tmp_path):
  if not os.path.isdir(OMNIGLOT):
    pytest.skip(f"no Omniglot copy at {OMNIGLOT}")
  data = tmp_path / "omniglot"
  shutil.copytree(OMNIGLOT, data)
  for path in data.iterdir():
    path.chmod(0o644)
  return data


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_omniglot_data_file(damage, omniglot_copy, tmp_path):
  source = omniglot_copy / "images_background.npz"
  if damage == "missing":
    source.unlink()
    message = (f"omniglot split 'train' is not available in {omniglot_copy}: missing the "
               f"official {omniglot_copy / 'images_background.zip'} (download https://github.com/"
               f"brendenlake/omniglot/raw/master/python/images_background.zip) or its extracted "
               f"folder {omniglot_copy / 'images_background'}/ (964 character folders")
  else:
    with open(source, "r+b") as f:
      f.truncate(1000)
    message = f"{source} is corrupt or incomplete (1000 bytes): its sha256 is"
  proc = _run("train", ["--config=experiments/configs/fewshot.py:dataset=omniglot,row=flp2",
                        f"--workdir={tmp_path / 'run'}",
                        f"--config.fewshot.data_dir={omniglot_copy}"],
              env={"FLPJAX_CACHE_DIR": str(tmp_path / "cache")})
  _check(proc, message)

