"""Names shared by the modules that write and read run folders, model folders and configs.

A training run folder (``timm-pushpull train``) holds ``checkpoint.pth``, ``train_config.yaml``,
``metrics.jsonl`` and, at the end, the timm model folder files ``model.safetensors`` +
``config.json``; ``timm-pushpull evaluate`` adds ``results.json`` and ``per_image.npz``, and
``timm-pushpull publish`` writes ``README.md`` (the card) and ``robustness.png``. Everything that
names one of these files imports it from here, so renaming one is a one-line change.
"""

# the timm model folder (timm's HF_SAFE_WEIGHTS_NAME and HF_CONFIG_NAME): the only weights we read
# or write are safetensors
WEIGHTS_FILE = "model.safetensors"
MODEL_CONFIG_FILE = "config.json"
MODEL_FILES = (WEIGHTS_FILE, MODEL_CONFIG_FILE)

# a training run
RESUME_FILE = "checkpoint.pth"
TRAIN_CONFIG_FILE = "train_config.yaml"
METRICS_FILE = "metrics.jsonl"

# a robustness benchmark (timm-pushpull evaluate)
RESULTS_FILE = "results.json"
PER_IMAGE_FILE = "per_image.npz"

# a Hub folder (timm-pushpull publish)
CARD_FILE = "README.md"
PLOT_FILE = "robustness.png"
LICENSE_FILE = "LICENSE"

# config.json keys of ours, beside timm's
VERSION_KEY = "timm_pushpull_version"  # which timm-pushpull wrote the folder, for "upgrade" hints
CONVERSION_KEY = "pushpull_conversion"  # convert_to_pushpull's scope and kwargs (train --convert)

# environment variables
WEIGHTS_DIR_ENV = "TIMM_PUSHPULL_WEIGHTS_DIR"  # local copies of pretrained weights
# the folder of the push-pull authors' CIFAR-10 release (checkpoints/, results/): publish's
# --official-dir when not given
OFFICIAL_DIR_ENV = "TIMM_PUSHPULL_OFFICIAL_DIR"

# the lock of an output folder held by one run at a time (timm_pushpull.locking), and who holds it
LOCK_FILE = ".timm_pushpull.lock"
LOCK_HOLDER_FILE = ".timm_pushpull.lock.json"
