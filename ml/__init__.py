"""The model: a ResNet34 fine-tuned on Oxford-IIIT Pets, with no Django anywhere in it.

Everything here runs from a notebook, a script or a worker: breed names (``breeds``),
the dataset (``data``, ``layout``), the network (``model``), training (``runs.run`` is the
one entry, over the ``training`` loop and the recipes), evaluation, calibration of the
verdicts, figures (``plots``), checkpoints, inference (``inference.Predictor``) and its
backends, Grad-CAM heatmaps (``explain``) and warm-up. The site's side of models
(versions, activation, the commands) is the Django app ``registry``.
"""
