"""What a task is: `Task` and its loss and metrics (defined in `flpjax.types`)."""

from flpjax.types import Episode, Task, loss_fn, metrics  # noqa: F401  (the task API)
