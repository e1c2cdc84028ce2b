"""The zoo's data: shipped files (read lazily, cached) and synthetic stand-ins of the same shapes.

Real data lives next to this file in ``data/`` (provenance in ``data/README.md``); nothing is
downloaded and nothing outside the package is read. Every batch stream is an endless, seeded
iterator: the same ``seed`` gives the same batches on any device (they are drawn on the CPU with
a private ``torch.Generator`` and then moved), and it never touches the global RNG.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Iterator, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F

DATA_DIR = Path(__file__).resolve().parent / "data"
DIGITS_PATH = DATA_DIR / "digits.npz"

# The 77 distinct characters of data/shakespeare.txt, sorted by code point. Spelled out so that
# building a GPT (also on the meta device) never reads the text; tests check it matches the file.
VOCAB = "\n !\"&'(),-./12345:;?ABCDEFGHIJKLMNOPQRSTUVWXYZ[]_abcdefghijklmnopqrstuvwxyz{}"
VOCAB_SIZE = len(VOCAB)
STOI = {ch: i for i, ch in enumerate(VOCAB)}

IMAGE_SHAPE = (3, 32, 32)
NUM_CLASSES = 10
N_TRAIN_DIGITS = 1500  # of 1797; the rest is the "val" split
TEXT_TRAIN_FRACTION = 0.9

# Seeds of the fixed synthetic teachers (independent of the batch seed, so every seed draws
# samples from the same task).
_TEACHER_SEED = 1234

Batch = tuple[tuple[torch.Tensor, ...], torch.Tensor]


def encode(text: str) -> torch.Tensor:
    """Characters -> int64 ids (KeyError on a character outside VOCAB)."""
    return torch.tensor([STOI[c] for c in text], dtype=torch.long)


def decode(ids) -> str:
    return "".join(VOCAB[int(i)] for i in ids)


# ----------------------------------------------------------------------------- loading (cached)

@functools.lru_cache(maxsize=None)
def shakespeare_text() -> str:
    return (DATA_DIR / "shakespeare.txt").read_text(encoding="utf-8")


@functools.lru_cache(maxsize=None)
def shakespeare_ids() -> torch.Tensor:
    """The whole text as uint8 ids (1.1 M entries); callers index it and cast to int64."""
    text = shakespeare_text()
    lut = np.full(256, 255, dtype=np.uint8)
    for ch, i in STOI.items():
        lut[ord(ch)] = i
    raw = np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    ids = lut[raw]
    if (ids == 255).any():
        bad = sorted({text[j] for j in np.flatnonzero(ids == 255)[:10]})
        raise ValueError(f"shakespeare.txt has characters outside VOCAB: {bad!r}")
    return torch.from_numpy(ids.copy())


def text_split(split: str) -> torch.Tensor:
    ids = shakespeare_ids()
    cut = int(len(ids) * TEXT_TRAIN_FRACTION)
    return ids[:cut] if _check_split(split) == "train" else ids[cut:]


def digits_raw(path: Optional[Union[str, "os.PathLike[str]"]] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The raw 8x8 digits as ``(images uint8 (N, 8, 8), labels int64 (N,))``: the shipped
    ``data/digits.npz`` (:data:`DIGITS_PATH`), or the ``.npz`` at ``path`` with the same arrays
    (``images``, ``target``). Fresh tensors on every call (callers may modify them)."""
    images, target = _read_digits(str(Path(path).resolve()) if path is not None else str(DIGITS_PATH))
    return torch.from_numpy(images.copy()), torch.from_numpy(target.astype(np.int64))


@functools.lru_cache(maxsize=None)
def _read_digits(path: str) -> tuple[np.ndarray, np.ndarray]:
    if not Path(path).is_file():
        raise FileNotFoundError(f"digits data not found at {path}; pass path= to an .npz with arrays "
                                "'images' (N, 8, 8) and 'target' (N,)")
    with np.load(path) as f:
        return f["images"].copy(), f["target"].copy()


def upsample_digits(images8: torch.Tensor) -> torch.Tensor:
    """(N, 8, 8) float -> (N, 3, 32, 32): bilinear upsampling, grey repeated over 3 channels."""
    x = F.interpolate(images8[:, None].float(), size=IMAGE_SHAPE[1:], mode="bilinear", align_corners=False)
    return x.expand(-1, IMAGE_SHAPE[0], -1, -1).contiguous()


@functools.lru_cache(maxsize=None)
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1797 digits as (images (N, 3, 32, 32) float32, labels (N,) int64), normalised with the
    train split's scalar pixel mean and std, so images have roughly zero mean and unit RMS."""
    images, target = digits_raw()
    x = upsample_digits(images.to(torch.float32))
    train = x[:N_TRAIN_DIGITS]
    x = (x - train.mean()) / train.std()
    return x, target


def digits_split(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = digits()
    if _check_split(split) == "train":
        return x[:N_TRAIN_DIGITS], y[:N_TRAIN_DIGITS]
    return x[N_TRAIN_DIGITS:], y[N_TRAIN_DIGITS:]


def _check_split(split: str) -> str:
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    return split


def _check_source(source: str) -> str:
    if source not in ("real", "synthetic"):
        raise ValueError(f"source must be 'real' or 'synthetic', got {source!r}")
    return source


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


# ----------------------------------------------------------------------------- synthetic teachers

@functools.lru_cache(maxsize=None)
def _image_teacher() -> torch.Tensor:
    """A fixed random linear classifier on images: labels = argmax(W @ x)."""
    g = _generator(_TEACHER_SEED)
    return torch.randn(NUM_CLASSES, int(np.prod(IMAGE_SHAPE)), generator=g)


@functools.lru_cache(maxsize=None)
def _bigram_teacher() -> torch.Tensor:
    """A fixed random character bigram model: (V, V) next-token probabilities, fairly peaked."""
    g = _generator(_TEACHER_SEED + 1)
    return torch.softmax(3.0 * torch.randn(VOCAB_SIZE, VOCAB_SIZE, generator=g), dim=-1)


def synthetic_images(n: int, g: torch.Generator) -> torch.Tensor:
    """Gaussian 8x8 noise per channel, upsampled like the digits and normalised to unit RMS."""
    low = torch.randn(n * IMAGE_SHAPE[0], 8, 8, generator=g)
    x = upsample_digits(low)[:, :1].reshape(n, *IMAGE_SHAPE)
    return x / x.pow(2).mean().sqrt()


# ----------------------------------------------------------------------------- batch streams

def _index_batches(n: int, batch_size: int, g: torch.Generator) -> Iterator[torch.Tensor]:
    """Endless epochs of seeded permutations of range(n), cut into batches (spanning epochs)."""
    buf = torch.empty(0, dtype=torch.long)
    while True:
        while len(buf) < batch_size:
            buf = torch.cat([buf, torch.randperm(n, generator=g)])
        yield buf[:batch_size]
        buf = buf[batch_size:]


def _limit(it: Iterator, steps: Optional[int]) -> Iterator:
    if steps is None:
        yield from it
        return
    for _, item in zip(range(int(steps)), it):
        yield item


def image_batches(batch_size: int, *, seed: int = 0, device="cpu", source: str = "real",
                  split: str = "train", flatten: bool = False, steps: Optional[int] = None) -> Iterator[Batch]:
    """((images,), labels): images (B, 3, 32, 32) float32 (or (B, 3072) with ``flatten``),
    labels (B,) int64 in [0, 10). ``source="real"``: the digits; ``"synthetic"``: smooth Gaussian
    images labelled by a fixed random linear teacher (``split`` is then ignored)."""
    _check_source(source)
    _check_split(split)
    batch_size = _check_batch(batch_size)
    return _image_stream(batch_size, seed, device, source, split, flatten, steps)


def _image_stream(batch_size, seed, device, source, split, flatten, steps) -> Iterator[Batch]:
    def gen():
        g = _generator(seed)
        if source == "real":
            xs, ys = digits_split(split)
            for idx in _index_batches(len(xs), batch_size, g):
                yield xs[idx], ys[idx]
        else:
            teacher = _image_teacher()
            while True:
                x = synthetic_images(batch_size, g)
                yield x, (x.flatten(1) @ teacher.T).argmax(dim=1)

    for x, y in _limit(gen(), steps):
        if flatten:
            x = x.flatten(1)
        yield (x.to(device),), y.to(device)


def text_batches(batch_size: int, *, block_size: int, seed: int = 0, device="cpu", source: str = "real",
                 split: str = "train", steps: Optional[int] = None) -> Iterator[Batch]:
    """((ids,), targets): both (B, block_size) int64; targets are the next characters.
    ``source="real"``: random windows of the Shakespeare text; ``"synthetic"``: sequences sampled
    from a fixed random bigram teacher (``split`` is then ignored)."""
    _check_source(source)
    _check_split(split)
    batch_size = _check_batch(batch_size)
    return _text_stream(batch_size, block_size, seed, device, source, split, steps)


def _text_stream(batch_size, block_size, seed, device, source, split, steps) -> Iterator[Batch]:
    def gen():
        g = _generator(seed)
        offsets = torch.arange(block_size + 1)
        if source == "real":
            data = text_split(split)
            while True:
                start = torch.randint(0, len(data) - block_size - 1, (batch_size,), generator=g)
                yield data[start[:, None] + offsets].long()
        else:
            probs = _bigram_teacher()
            while True:
                seq = torch.empty(batch_size, block_size + 1, dtype=torch.long)
                seq[:, 0] = torch.randint(0, VOCAB_SIZE, (batch_size,), generator=g)
                for t in range(1, block_size + 1):
                    seq[:, t] = torch.multinomial(probs[seq[:, t - 1]], 1, generator=g)[:, 0]
                yield seq

    for seq in _limit(gen(), steps):
        yield (seq[:, :-1].to(device),), seq[:, 1:].to(device)


def _check_batch(batch_size) -> int:
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    return int(batch_size)
