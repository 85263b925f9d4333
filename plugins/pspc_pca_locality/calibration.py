"""The thresholds τ `pspc calibrate` tries for PCA-locality at each noise level: from 0.005 (masks that hold
most pixels) to 1 (each output's own pixel-channel alone), spaced about evenly in log τ. Light: the hooks name it."""


def candidates(dataset) -> list[float]:
    return [0.005, 0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0]
