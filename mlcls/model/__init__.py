"""Model: encoder + pooling + head -> logits, and the losses that train it.

classifier.py   the encoder (a transformers `AutoModel`), mean/CLS pooling and the linear head
loss_specs.py   the loss registry's names, descriptions and parameters (no torch: `mlcls losses` is fast)
losses.py       the loss modules (torch) and `build_loss`
lexical.py      model.lexical: a TF-IDF + logistic-regression scorer blended with the transformer
"""
