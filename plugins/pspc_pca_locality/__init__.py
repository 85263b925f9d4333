"""The PCA-locality denoiser plugin (Lukoianov et al., NeurIPS 2025): empirical posteriors per pixel-channel over
the pixels its Wiener filter ties to it."""
