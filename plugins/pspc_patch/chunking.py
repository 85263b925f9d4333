"""How much work the torch passes of the PSPC composite do at once, by device: stated once, for the code and for
the parameter's help (`pspc show pspc_sq`). Light: the hooks import it."""

DEFAULT_CHUNK = {"cpu": 1024, "cuda": 65536}  # latent×image pairs per step: ~4 MB per float32 map on the CPU
