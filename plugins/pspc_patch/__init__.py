"""Patch Set Posterior Composites (PSPC): PSPC-Square (all k×k windows) and PSPC-Flex (heatmap crops).

Each crop C gets its own empirical posterior over the training set restricted to C; every pixel averages the
patch estimates of the crops that hold it (docs/denoisers.md, "PSPC"). `composite.py` streams the dataset twice
(per-crop log-sum-exp, then weights) for any family of crops; `crops.py` holds the two families as linear maps.
"""
