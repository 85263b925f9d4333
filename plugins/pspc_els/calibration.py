"""The patch sizes `pspc calibrate` tries for ELS and LS at each noise level: every odd size 1..R (windows are
centred on a pixel). Light: the hooks name it; it runs only when calibrating."""


def odd_sizes(dataset) -> list[int]:
    return list(range(1, dataset.resolution + 1, 2))
