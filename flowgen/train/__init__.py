"""Training: one Accelerate trainer for every model, driven by YAML recipes.

- :mod:`~flowgen.train.config`: recipes (``task``, ``model``, ``train``, ``task_args``) parsed
  into frozen dataclasses; :class:`~flowgen.train.config.TrainConfig` holds the ``train:`` fields.
- :mod:`~flowgen.train.tasks`: the :class:`~flowgen.train.tasks.Task` interface and its registry;
  :mod:`~flowgen.train.toy2d` is the 2-D toy task.
- :mod:`~flowgen.train.trainer`: :class:`~flowgen.train.trainer.Trainer` (the loop, how to launch
  several processes); :mod:`~flowgen.train.batching`: the deterministic global batch.
- :mod:`~flowgen.train.ema`, :mod:`~flowgen.train.schedule`, :mod:`~flowgen.train.logs`,
  :mod:`~flowgen.train.state` (run folders, checkpoints, resume).
- :mod:`~flowgen.train.command`: ``flowgen train``.

Nothing is imported here, so ``flowgen --help`` stays fast.
"""
