"""The embedded shapes task: a procedural text-to-image dataset (``data``), the held-out pixel metric
that measures prompt fidelity from its known factors (``fidelity``), and the script that pretrains
the tiny text-to-image model on it (``train``; its weights live in ``assets/shapes-sd``).

May import: nothing else of the project but ``actors``. ``data`` and ``fidelity`` are numpy only.
"""
