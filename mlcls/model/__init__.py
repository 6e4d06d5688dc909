"""Model: encoder + pooling + head -> logits, and the losses that train it.

classifier.py   the two heads (model.head): the encoder (a transformers `AutoModel`) with mean/CLS pooling and
                mlcls's linear head, or transformers' own AutoModelForSequenceClassification; the fold ensemble
loss_specs.py   the loss registry's names, descriptions and parameters (no torch: `mlcls losses` is fast)
losses.py       the loss modules (torch) and `build_loss`
lexical.py      model.lexical: a TF-IDF + logistic-regression scorer blended with the transformer
"""
