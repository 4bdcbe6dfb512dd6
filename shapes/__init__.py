"""The embedded shapes task, in one place: a procedural text-to-image dataset (``shapes.data``), the
held-out pixel metric that measures prompt fidelity from its known factors (``shapes.fidelity``),
the learned reward model and its scoring (``shapes.net``, ``shapes.reward``), and the committed
weights under ``assets/``: the training and held-out caption lists (``shapes_train.txt``,
``shapes_heldout.txt``, the built-in prompt lists of those names), the pretrained tiny text-to-image
model (``shapes-sd``), its few-step student (``shapes-turbo``) and the reward model
(``shapes-classifier``). The scripts that train them are in ``scripts/`` (``shapes_pretrain``,
``shapes_distill``, ``shapes_reward_train``).

May import: nothing else of the project but ``plumbing``. ``data`` and ``fidelity`` are numpy only;
``net`` and ``reward`` import torch.
"""

from pathlib import Path

ASSETS = Path(__file__).parent / "assets"  # the caption lists, shapes-sd, shapes-turbo, shapes-classifier
