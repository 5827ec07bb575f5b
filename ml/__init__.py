"""Petsite's machine-learning package.

The core imports no Django: use it from a notebook or a script.

- the model and its data: ``breeds``, ``layout``, ``data``, ``synthetic``, ``model`` (ResNet34
  and its forward pass), ``checkpoints``, ``files``
- training: ``config`` (one ``RunConfig``), ``training`` (the shared loop), ``recipes.full``,
  ``recipes.quick``, ``features`` (the quick recipe's cache), ``precision``, ``progress``,
  ``outputs`` (what a run writes), and ``runs.run(recipe, config)``, the one entry
- judging a model: ``evaluation``, ``calibration`` (verdicts), ``plots``, ``explain`` (Grad-CAM)
- serving it: ``inference`` (``Predictor``), ``backends``, ``backend_choice``, ``onnx_export``,
  ``machine`` (the keys of cached choices), ``warmup``

``models``, ``services`` and the management commands are the Django shell.
"""
