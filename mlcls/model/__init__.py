"""Model: encoder + pooling + head -> logits, and the losses that train it.

attention.py    the encoder's attention in training: model.attention_dropout, and eager attention on a CPU
cpu_dropout.py  dropout for training on a CPU, its masks cut from 64-bit random draws (faster than torch's)
classifier.py   the two heads (model.head): the encoder (a transformers `AutoModel`) with mean/CLS pooling and
                mlcls's linear head, or transformers' own AutoModelForSequenceClassification; the fold ensemble
losses.py       the loss modules (torch) and `build_loss` (names and parameters: mlcls/loss_specs.py, which
                config.py checks without torch)
lexical.py      model.lexical: a TF-IDF + logistic-regression scorer blended with the transformer
unpadded.py     scoring a BERT encoder on its real tokens only (the linear layers skip padding), CPU inference
warm_start.py   model.init_from: a finished run's model with a head row per label of a new training
"""
