"""The study workflows: how close denoisers are to a reference (normally a trained network) at every noise level
on the same latents (`pspc compare`, on denoiser outputs and on samples), and fitting each local denoiser's scale
per noise level to that reference (`pspc calibrate`). `study` holds the latents and reference outputs both
share; `report` and `plot` what they write."""
