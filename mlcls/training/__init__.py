"""Training: one entry point, two siblings (one model; cross-fitting), and what they share.

entry.py       `train()`: reads the data, hands it to the recipe or to cross-fitting
recipe.py      one model, read top to bottom: prepare -> fit (epochs) -> finish (write the run)
crossfit.py    train.folds: K recipes on stratified folds, the rule tuned on out-of-fold scores, refit
data.py        the training data (read and validated once) and a training's result
claim.py       claiming a run: its name, lock, staging folder and config
fusion.py      model.lexical at the end of training: blend weight and rule, chosen together
init_from.py   model.init_from: the starting run read once, its labels matched to the new data, its weights
hooks.py       the per-epoch hook (EpochEnd, OnEpoch): mlcls tune's pruning hears the validation figures
resume.py      what a checkpoint carries besides tensors, and resuming from one exactly
optimizer.py   AdamW parameter groups (head at its own rate), warm-up and decay
split.py       the validation hold-out (stratified) and the folds
devices.py     Accelerate: device, data-parallel helpers, trackers
inputs.py      what the model reads: each article's windows of token ids (cached), or their frozen vectors
cache.py       token ids and frozen-encoder embeddings cached on disk
host_malloc.py glibc's malloc kept from returning freed activation memory (a faster loop on the CPU)
interrupt.py   Ctrl-C or SIGTERM as a request to stop at the next step boundary
"""
