"""Offline scripts, run by hand and never imported by the runtime packages: training the shapes
task's models (``python -m scripts.shapes_pretrain``, ``scripts.shapes_distill``,
``scripts.shapes_reward_train``; they write the committed weights under ``shapes/assets/``) and the
equivalence checks of the ported reward models against their original packages
(``scripts/equivalence/``, the reference halves run in side virtualenvs).

May import: anything of the project. No runtime package imports ``scripts``; the tests make the
equivalence fixtures' images with ``scripts.equivalence.common``.
"""
