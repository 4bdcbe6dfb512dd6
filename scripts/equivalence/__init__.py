"""The equivalence checks of the ported reward models against their original packages. For each model,
``<model>_reference.py`` runs the original package in a side virtualenv and writes what it computed
(tests/fixtures/<model>_tiny/, or a full-size run's folder), and ``<model>_compare.py`` scores that
folder with the project's own reward (rewards/) and prints the differences; ``common.py`` holds what
they share (the seeded images, pixel fingerprints, pieces of reference.json and of the reports).

May import: anything of the project (the compare scripts import rewards); the reference scripts and
common.py import only numpy at their top (see common.py for how a reference script finds it).
"""
