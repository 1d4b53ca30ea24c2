"""nerbilstm: named-entity recognition with a BiLSTM-CRF written from scratch in PyTorch."""

__version__ = "0.1.0"

__all__ = ["Tagger", "__version__"]


def __getattr__(name):
    # Lazy so that `import nerbilstm` stays cheap (the CLI imports torch only when needed).
    if name == "Tagger":
        from nerbilstm.predict import Tagger

        return Tagger
    raise AttributeError(name)
