"""The model: a ResNet34 fine-tuned on Oxford-IIIT Pets, with no Django anywhere in it.

The core imports no Django: use it from a notebook or a script.

- the model and its data: ``breeds``, ``layout``, ``data``, ``synthetic``, ``model`` (ResNet34
  and its forward pass), ``checkpoints``, ``files``
- training: ``config`` (one ``RunConfig``), ``training`` (the shared loop), ``recipes.full``,
  ``recipes.quick``, ``features`` (the quick recipe's cache), ``precision``, ``progress``,
  ``outputs`` (what a run writes), and ``runs.run(recipe, config)``, the one entry
- judging a model: ``evaluation``, ``calibration`` (verdicts), ``plots``, ``explain`` (Grad-CAM)
- serving it: ``inference`` (``Predictor``), ``backends``, ``backend_choice``, ``onnx_export``,
  ``machine`` (the keys of cached choices), ``warmup``

The site's side of models (versions, activation, warm-up records, the commands) is the
Django app ``registry``; training runs started from the site are the app ``training``.
"""
