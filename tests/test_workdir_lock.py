"""A workdir in use by one process: a second one stops at once, naming the first."""

import os
import signal
import subprocess
import sys

import pytest

from flpjax.experiment import checkpoints
from flpjax.experiment import workdir as workdir_lib
from flpjax.reporting import errors

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

HOLDER = r'''
import sys
from flpjax.experiment import workdir
lock = workdir.lock_workdir(sys.argv[1])
print("locked", flush=True)
sys.stdin.read()  # hold until stdin closes (or the process is killed)
'''


@pytest.fixture
def held(tmp_path):
  """A workdir locked by another Python process: ``(workdir, process)``."""
  work = tmp_path / "run"
  work.mkdir()
  proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(work)], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
  line = proc.stdout.readline()
  assert line == "locked\n", proc.stderr.read()[-2000:]
  yield str(work), proc
  if proc.poll() is None:
    proc.kill()
  proc.communicate()


def test_a_second_process_stops_at_once_naming_the_holder_until_it_ends(held):
  work, proc = held
  with pytest.raises(errors.WorkdirError) as e:
    checkpoints.checkpoint_manager(work, 2)
  message = str(e.value)
  assert message.startswith(f"--workdir={work} is in use by process {proc.pid} (")
  assert "wait for it to end (or stop it), or use another --workdir" in message
  assert "\n" not in message
  assert not os.path.exists(os.path.join(work, "checkpoints"))  # nothing touched
  # Reading (evaluation, analysis) does not need the lock.
  checkpoints.checkpoint_manager(work, read_only=True).close()
  # A killed holder leaves its pid in the file, but the kernel has released its flock.
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert os.path.getsize(os.path.join(work, workdir_lib.LOCK_FILE)) > 0
  mngr = checkpoints.checkpoint_manager(work, 2)
  try:
    assert f'"pid": {os.getpid()}' in open(os.path.join(work, workdir_lib.LOCK_FILE)).read()
    with pytest.raises(errors.WorkdirError, match=f"in use by process {os.getpid()}"):
      checkpoints.checkpoint_manager(work, 2)  # not reentrant, also within a process
  finally:
    mngr.close()
  checkpoints.checkpoint_manager(work, 2).close()  # released by close()


def test_the_binary_refuses_in_one_line_with_exit_status_2(held, tmp_path):
  work, proc = held
  config = tmp_path / "tiny.py"
  config.write_text("from flpjax import config as c\n\ndef get_config():\n"
                    "  x = c.base_config()\n  x.net.widths = (8,)\n  x.plastic_layers = 1\n"
                    "  x.meta.steps = 2\n  return x\n")
  result = subprocess.run([sys.executable, "experiments/train.py", f"--config={config}",
                           f"--workdir={work}"], cwd=REPO, capture_output=True, text=True,
                          check=False, timeout=300)
  assert result.returncode == 2, result.stderr[-2000:]
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith(f"error: --workdir={work} is in use by process {proc.pid} ("), last
  assert not os.path.exists(os.path.join(work, "metrics.jsonl"))
