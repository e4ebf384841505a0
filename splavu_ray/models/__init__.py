"""The networks: the frozen backbone f_E, the anonymizing adapter f_A, the task heads, and the embedder that
turns one manifest row into frozen features. Plain PyTorch."""
