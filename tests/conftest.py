"""Suite-wide settings: one XLA compilation cache and one prepared-data directory per session.

Most of the suite's time on a CPU is XLA compiling the same programs again:
every `train.train_and_evaluate` (and every binary the tests start) builds a
new jitted meta-step and evaluation, so two runs of the same config compile
the same HLO twice (several seconds each on a 2-core CPU). JAX's persistent
compilation cache, keyed by the HLO, the compile options and the JAX/XLA
version, lets the second compile load the first one's executable: the same
machine code, so the same numbers, bit for bit.

The cache lives in a temporary directory made for this session (removed at
its end) unless ``JAX_COMPILATION_CACHE_DIR`` is already set. It is also put
in the environment, so subprocesses (``train.py``, ``evaluate.py``, the
multi-device scripts) share it. ``FLPJAX_TEST_COMPILE_CACHE=0`` turns it off
(every program compiled afresh).

`data_cache` is one directory of prepared datasets for the session: the tests
that meta-train on Omniglot (and test_datasets.py's own checks) prepare it once
instead of once per test.

Real data: the library's default data directory is in the user's own space
(``~/.local/share/flpjax``); the tests read the project's read-only copy in
``../shared/data`` (next to the repository) through ``FLPJAX_DATA_DIR``, unless
it is set already. Tests that need a data set skip, naming the folder, where it
is absent.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import jax
import pytest

_OWN_CACHE = None
SHARED_DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..",
                           "shared", "data")
if not os.environ.get("FLPJAX_DATA_DIR") and os.path.isdir(SHARED_DATA):
  os.environ["FLPJAX_DATA_DIR"] = os.path.realpath(SHARED_DATA)

if os.environ.get("FLPJAX_TEST_COMPILE_CACHE", "1") != "0":
  if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    _OWN_CACHE = tempfile.mkdtemp(prefix="flpjax-test-xla-cache-")
    atexit.register(shutil.rmtree, _OWN_CACHE, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _OWN_CACHE
  # Cache every program, however quick to compile (the default skips those under 1 s).
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
  # This process (JAX reads the variables only when it is first imported); the
  # environment is for the subprocesses.
  jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
  jax.config.update("jax_persistent_cache_min_compile_time_secs",
                    float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))
  jax.config.update("jax_persistent_cache_min_entry_size_bytes",
                    int(os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"]))


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory):
  """A prepared-data directory (``cache_dir`` / ``$FLPJAX_CACHE_DIR``) shared by the session."""
  return tmp_path_factory.mktemp("flpjax_tfds")
