"""README's library section ("Use it in your code"): its Python blocks run, its links exist.

The blocks run in order in one namespace, in a subprocess with XLA's backend
optimisation turned down (compiling is what takes the time at their size).
"""

import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECTION = "## Use it in your code"


def _section() -> str:
  text = open(os.path.join(REPO, "README.md")).read()
  assert SECTION in text, f"README.md has no section {SECTION!r}"
  start = text.index(SECTION)
  end = text.find("\n## ", start + len(SECTION))
  return text[start:end if end >= 0 else len(text)]


def test_library_section_code_blocks_run(tmp_path):
  blocks = re.findall(r"```python\n(.*?)```", _section(), re.S)
  assert blocks
  script = tmp_path / "readme_blocks.py"
  script.write_text("\n\n".join(blocks) + "\nprint('README blocks ran')\n")
  env = dict(os.environ, XLA_FLAGS=(os.environ.get("XLA_FLAGS", "")
                                    + " --xla_backend_optimization_level=0").strip())
  proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                        text=True, check=False, env=env, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "README blocks ran" in proc.stdout
  assert "'mse':" in proc.stdout  # the evaluation summary


def test_library_section_links_exist():
  for link in re.findall(r"\]\(([^)#:]+)\)", _section()):
    assert os.path.exists(os.path.join(REPO, link)), link
  for name in re.findall(r"`examples/([a-z_]+\.py)`", open(os.path.join(REPO, "README.md")).read()):
    assert os.path.isfile(os.path.join(REPO, "examples", name)), name
