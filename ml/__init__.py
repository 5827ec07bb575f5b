"""Petsite's machine-learning package.

The modules ``breeds``, ``data``, ``model``, ``training``, ``evaluation``, ``plots``,
``inference`` and ``checkpoints`` import no Django: use them from a notebook or a
script. ``models``, ``services`` and the management commands are the Django shell.
"""
