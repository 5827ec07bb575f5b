"""The training recipes: ``full`` (fastai's fine-tune of every layer) and ``quick`` (a new
head on cached body features). Each takes an ``ml.config.RunConfig`` and writes a run
directory (``ml.outputs``); ``ml.runs.run`` chooses and runs one."""
