"""Training: the loop in stages (prepare -> fit -> end of epoch -> finish) and what it leans on.

loop.py        `train()`: read as a recipe, top to bottom
split.py       the validation hold-out (stratified)
devices.py     Accelerate: device, precision, data-parallel helpers
checkpoint.py  checkpoints written atomically, read back for `train --resume`
cache.py       token ids and frozen-encoder embeddings cached on disk
interrupt.py   Ctrl-C as a request to stop at the next step boundary
"""
