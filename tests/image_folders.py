"""A generated folder of class subfolders of small PNGs, for the data tests."""

import pathlib

import numpy as np
import PIL.Image


def make_folder(root: pathlib.Path, classes: int = 6, per_class: int = 8, size: int = 12,
                mode: str = "L", seed: int = 0) -> pathlib.Path:
  """A folder of class subfolders of small PNGs: a random prototype per class plus noise."""
  rng = np.random.default_rng(seed)
  shape = (size, size) + ((3,) if mode == "RGB" else ())
  for c in range(classes):
    directory = root / f"class_{c:02d}"
    directory.mkdir(parents=True)
    base = rng.integers(0, 256, shape)
    for i in range(per_class):
      image = np.clip(base + rng.integers(-25, 26, shape), 0, 255).astype(np.uint8)
      PIL.Image.fromarray(image, mode).save(directory / f"{i:03d}.png")
  return root
