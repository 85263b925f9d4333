"""The Gaussian denoiser plugin: the posterior mean under a Gaussian fit to the training set."""
