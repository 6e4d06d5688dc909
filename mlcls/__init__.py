"""mlcls: train, evaluate and serve multi-label text classifiers from the command line."""

__version__ = "0.1.0"
