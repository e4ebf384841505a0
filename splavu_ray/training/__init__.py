"""Training logic in plain PyTorch: the model and its batches, one step's losses, the optimiser and schedule,
the one epoch loop (used by the Ray Train worker and by the one-process replay), and pre-run checks."""
