"""The `heatmaps` workflow: PSPC-Flex gradient-sensitivity heatmaps (Niedoba et al. 2025, eq. 8) of any
differentiable denoiser, by batched vector-Jacobian products (`compute`), written as `pspc_patch.heatmap_files`
reads them."""
