"""The SDPO learner: the objective, advantages, the learner worker and the driver loop."""
