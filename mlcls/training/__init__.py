"""Training: the loop in stages (prepare -> fit -> end of epoch -> finish) and what it leans on.

loop.py        `train()`: read as a recipe, top to bottom
crossfit.py    train.folds: K fold trainings, the rule tuned on out-of-fold scores, refit
fusion.py      model.lexical at the end of training: blend weight and rule, chosen together
provenance.py  provenance.json: versions, command line, data files' sha256
split.py       the validation hold-out (stratified) and the folds
devices.py     Accelerate: device, precision, data-parallel helpers
checkpoint.py  checkpoints written atomically, read back for `train --resume`
cache.py       token ids and frozen-encoder embeddings cached on disk
interrupt.py   Ctrl-C as a request to stop at the next step boundary
"""
