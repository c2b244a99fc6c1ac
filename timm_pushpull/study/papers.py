"""The papers' numbers the study's report sets beside its own, as transcribed (with where from)."""

# The paper's accuracies (%, MNIST) at the levels above as issue 15 transcribed them (the paper
# itself was not reachable offline to check them), None where that transcription elides a value
# the table has; sweep -> label -> accuracies.
PAPER_MNIST: dict[str, dict[str, list[float | None]]] = {
    "gaussian": {
        "A": [98.93, 98.94, 98.73, 94.61, 86.5, 76.83, 68.2, 61.6],
        "PA": [99.11, 99.1, 98.93, 95.27, 87.09, 78.38, 69.71, 62.8],
        "B": [98.85, None, None, 90.24, 73.91, 62.62, 53.55, 45.67],
        "PB": [98.74, None, None, 95.24, 87.2, 78.72, 71.43, 63.1],
        "D": [None, None, None, 90.02, 78.62, 68.63, 60.34, 53.97],
        "PD": [None, None, None, 93.41, 81.99, 71.27, 63.88, 57.24],
    },
    "contrast_poisson": {
        "A": [98.96, 80.36, 69.07, 52.79, 30.8],
        "PA": [99.11, 97.53, 95.09, 89.1, 62.84],
        "D": [98.55, 79.94, 63.61, 46.18, 37.46],
        "PD": [98.66, 97.44, 95.72, 90.8, 71.9],
    },
}


# Rows the paper's tables report that no transcription here has, with what issue 27 says of them
# (not checked against the paper): sweep -> [(labels, note)].
PAPER_MNIST_NOT_TRANSCRIBED: dict[str, list[tuple[str, str]]] = {
    "gaussian": [("C, PC", "issue 27: PC 0.1-3.0 points less accurate than C at variance >= 0.1, "
                           "the paper's own negative pair")],
    "contrast_poisson": [("B, PB, C, PC", "issue 27: the paper's level-averaged gaps over all "
                                          "four pairs are 3.0-25.8 points")],
}  # fmt: skip


# The authors' CIFAR-10-C errors (%, mean over the 5 severities) of their released ResNet-20 and
# ResNet-20-PP (push-pull first conv), from the result files of their release
# (github.com/nicstrisc/Push-Pull-CNN-layer, results/resnet/resnet-20{,-pp}/C_average.txt);
# issue 27 quotes the same values from the journal's Table 2. corruption -> (R20, R20-PP).
PAPER_CIFAR10C_RESNET20: dict[str, tuple[float, float]] = {
    "gaussian_noise": (57.41, 49.90), "shot_noise": (45.75, 39.98),
    "impulse_noise": (41.88, 37.20), "defocus_blur": (21.43, 22.30),
    "glass_blur": (58.82, 58.56), "motion_blur": (30.62, 29.50), "zoom_blur": (27.54, 29.68),
    "snow": (25.06, 25.59), "frost": (31.39, 31.29), "fog": (16.56, 17.58),
    "brightness": (9.73, 10.34), "contrast": (29.59, 30.50),
    "elastic_transform": (20.37, 20.65), "pixelate": (32.33, 32.70),
    "jpeg_compression": (23.81, 22.16), "speckle_noise": (41.34, 37.55),
    "gaussian_blur": (31.32, 33.24), "spatter": (19.03, 17.85), "saturate": (11.52, 11.70),
}  # fmt: skip


# (push-pull, baseline) labels of the groups whose per-corruption profile is set beside the paper's
PAPER_CIFAR10C_PAIRS = {
    "resnet": ("R20-pp", "R20"),
    "resnet_plateau": ("R20-pp plateau", "R20 plateau"),
}
