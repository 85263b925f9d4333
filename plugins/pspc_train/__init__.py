"""A small, honest EDM trainer (Karras et al. 2022) for the architectures of the `network` plugin.

For small experiments on a CPU or one GPU: EDM's loss and preconditioning, log-normal σ sampling, Adam with a
learning-rate ramp-up, an EMA with EDM's half-life ramp-up, optional x-flips. It is not a replacement for EDM's
distributed trainer (no multi-GPU, no mixed precision, no augmentation pipeline).

The networks themselves come from `pspc_network`; checkpoints are that plugin's `.safetensors` files (the
preconditioner's `state_dict` with the official key names, metadata `pspc_config`).
"""
