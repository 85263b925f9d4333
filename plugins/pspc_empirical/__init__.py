"""The empirical (optimal) denoiser plugin: the exact posterior mean over the training set."""
