"""The `compare` workflow: how close denoisers are to a reference (normally a trained network) at every noise
level, on the same latents (`compare`), with the table, CSV and plot (`plot`) it writes."""
