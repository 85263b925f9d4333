"""The kNN estimator plugin (Niedoba et al., ICML 2024): the empirical denoiser by self-normalised importance
sampling from a proposal built on the k nearest training images."""
