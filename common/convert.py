"""Converters: photo folder -> InsightFace train.rec + held-out verification .bin; .rec -> folder;
a text summary of what a .rec/.bin holds.

Photo folder layout: ``root/<identity>/<image files>`` in any format Pillow or OpenCV reads
(jpg, png, pgm, gif, ...); greyscale becomes RGB. Images are resized/padded to a square
(``common.images.to_size``) and stored as JPEG; a JPEG that already has the target size is stored
as its original bytes (re-encoding would change its pixels). A seeded draw holds identities
out of training; the verification pairs are built from them only, laid out like LFW's
``pairs.txt``: 10 folds of equal size, each fold half same-identity pairs then half
different-identity pairs, no pair repeated.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from common.binfile import load_bin, write_bin
from common.face_dataset import FaceRecordDataset, FaceRecordWriter
from common.images import decode, encode_jpeg, to_size

NUM_FOLDS = 10


def scan_folder(root):
    """``root/<identity>/<files>`` -> [(identity, [paths])] sorted by name; skips hidden files."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: photo folder not found")
    identities = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(p for p in sub.iterdir() if p.is_file() and not p.name.startswith("."))
        if not files:
            raise ValueError(f"{sub}: empty identity (no image files)")
        identities.append((sub.name, files))
    if not identities:
        raise ValueError(f"{root}: no identity sub-folders (expected root/<identity>/<images>)")
    return identities


def load_encoded(path, size: int, quality: int = 95) -> bytes:
    """An image file -> encoded bytes at ``size`` x ``size``: the original bytes for a JPEG that
    already has that size, else decode + resize/pad + JPEG."""
    data = Path(path).read_bytes()
    img = decode(data, where=str(path))
    if img.shape[:2] == (size, size) and data[:2] == b"\xff\xd8":
        return data
    return encode_jpeg(to_size(img, size), quality)


def make_pairs(group_sizes, num_pairs: int, rng):
    """Verification pairs over groups (identities) of items, in LFW's 10-fold layout.

    ``group_sizes[g]`` = number of items of identity g. Returns a list of
    ``((g1, i1), (g2, i2), same)`` of length ``num_pairs``: fold f holds num_pairs/20 same
    pairs followed by num_pairs/20 different pairs. Pairs are drawn without repetition.
    """
    if num_pairs < 2 * NUM_FOLDS or num_pairs % (2 * NUM_FOLDS):
        raise ValueError(f"num_pairs must be a positive multiple of {2 * NUM_FOLDS} "
                         f"(10 folds, half same), got {num_pairs}")
    half = num_pairs // 2
    same_pool = [(g, i, j) for g, n in enumerate(group_sizes) for i in range(n)
                 for j in range(i + 1, n)]
    if len(same_pool) < half:
        raise ValueError(f"num_pairs {num_pairs} needs {half} distinct same-identity pairs, the "
                         f"held-out identities give only {len(same_pool)}")
    same = [same_pool[k] for k in rng.permutation(len(same_pool))[:half]]
    sizes = np.asarray(group_sizes)
    total = int(sizes.sum())
    diff_total = (total * total - int((sizes ** 2).sum())) // 2
    if len(group_sizes) < 2 or diff_total < half:
        raise ValueError(f"num_pairs {num_pairs} needs {half} distinct different-identity pairs, "
                         f"the held-out identities give only {diff_total}")
    diff, seen = [], set()
    probs = sizes / total
    while len(diff) < half:
        g1, g2 = rng.choice(len(sizes), 2, replace=False, p=probs)
        a, b = (int(g1), int(rng.integers(sizes[g1]))), (int(g2), int(rng.integers(sizes[g2])))
        key = (a, b) if a < b else (b, a)
        if key not in seen:
            seen.add(key)
            diff.append((a, b))
    per = half // NUM_FOLDS
    pairs = []
    for f in range(NUM_FOLDS):
        pairs += [((g, i), (g, j), True) for g, i, j in same[f * per:(f + 1) * per]]
        pairs += [(a, b, False) for a, b in diff[f * per:(f + 1) * per]]
    return pairs


def max_pairs(group_sizes, limit: int = 6000) -> int:
    """Largest valid pair count <= ``limit`` that the groups allow (0 if none)."""
    same = sum(n * (n - 1) // 2 for n in group_sizes)
    return min(limit, 2 * same) // (2 * NUM_FOLDS) * (2 * NUM_FOLDS)


def convert_folder(root, out_dir, size: int = 112, heldout: int | None = None,
                   num_pairs: int | None = None, seed: int = 0, quality: int = 95,
                   bin_name: str = "heldout.bin", progress: bool = True) -> dict:
    """Photo folder -> ``out_dir``/{train.rec, train.idx, property, <bin_name>, split.json}.

    ``heldout`` identities (default: a fifth, at least 2) with >= 2 images each are drawn with
    ``seed`` and kept out of training; ``num_pairs`` (default: as many as they allow, at most
    6000, a multiple of 20) verification pairs are built from them. ``split.json`` records which
    identity got which label and which were held out.
    """
    identities = scan_folder(root)
    rng = np.random.default_rng(seed)
    eligible = [k for k, (_, files) in enumerate(identities) if len(files) >= 2]
    if heldout is None:
        heldout = max(2, len(identities) // 5)
    if not 0 <= heldout <= len(eligible) or heldout == 1:
        raise ValueError(f"heldout must be 0 or in [2, {len(eligible)}] (identities with >= 2 "
                         f"images), got {heldout}")
    if heldout >= len(identities):
        raise ValueError(f"heldout ({heldout}) must leave identities for training "
                         f"({len(identities)} in all)")
    held = sorted(int(k) for k in rng.choice(eligible, heldout, replace=False)) if heldout else []
    held_set = set(held)
    out_dir = Path(out_dir)
    bar = tqdm(total=sum(len(f) for _, f in identities), desc="convert", unit="img",
               disable=not progress)
    train_labels = {}
    with FaceRecordWriter(out_dir, size) as writer:
        for k, (name, files) in enumerate(identities):
            if k in held_set:
                continue
            encoded = []
            for p in files:
                encoded.append(load_encoded(p, size, quality))
                bar.update()
            train_labels[name] = writer.add_identity(encoded)
        num_images = writer.num_images
    summary = {"source": str(root), "seed": seed, "image_size": size, "quality": quality,
               "train_identities": len(train_labels), "train_images": num_images,
               "train_labels": train_labels, "heldout": [identities[k][0] for k in held]}
    if held:
        held_images = []
        for k in held:
            enc = []
            for p in identities[k][1]:
                enc.append(load_encoded(p, size, quality))
                bar.update()
            held_images.append(enc)
        sizes = [len(x) for x in held_images]
        num_pairs = max_pairs(sizes) if num_pairs is None else int(num_pairs)
        if num_pairs == 0:
            raise ValueError(f"the {len(held)} held-out identities give fewer than 10 distinct "
                             "same-identity pairs; hold out more identities (--heldout)")
        pairs = make_pairs(sizes, num_pairs, rng)
        bins = [held_images[g][i] for a, b, _ in pairs for g, i in (a, b)]
        write_bin(out_dir / bin_name, bins, [s for _, _, s in pairs])
        summary.update(bin=bin_name, pairs=num_pairs, pair_list=[
            [identities[held[a[0]]][0], a[1], identities[held[b[0]]][0], b[1], s]
            for a, b, s in pairs])
    bar.close()
    (out_dir / "split.json").write_text(json.dumps(summary, indent=1))
    return summary


def sniff_extension(payload: bytes) -> str:
    if payload[:2] == b"\xff\xd8":
        return "jpg"
    if payload[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    return "bin"


def dump_rec(path, out_dir, progress: bool = True) -> int:
    """Write every image of a .rec as ``out_dir/<label>/<key>.<ext>`` (payload bytes as stored)."""
    out_dir = Path(out_dir)
    with FaceRecordDataset(path) as ds:
        for i in tqdm(range(len(ds)), desc="dump", unit="img", disable=not progress):
            _, payload = ds.read_raw(i)
            folder = out_dir / str(int(ds.labels[i]))
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{int(ds.keys[i])}.{sniff_extension(payload)}").write_bytes(payload)
        return len(ds)


def describe(path) -> str:
    """A human-readable summary of a data set folder, a .rec or a .bin."""
    path = Path(path)
    if path.suffix == ".bin":
        bins, issame = load_bin(path)
        kinds = {}
        for b in bins:
            ext = sniff_extension(b)
            kinds[ext] = kinds.get(ext, 0) + 1
        encodings = ", ".join(f"{v} {k}" for k, v in sorted(kinds.items()))
        lines = [f"{path}: verification .bin", f"  pairs: {len(issame)} "
                 f"({int(issame.sum())} same, {int((~issame).sum())} different)",
                 f"  images: {len(bins)} ({encodings})"]
        if bins:
            lines.append(f"  first image: {decode(bins[0], where=f'{path}[0]').shape}")
        if len(issame) and len(issame) % NUM_FOLDS == 0:
            folds = issame.reshape(NUM_FOLDS, -1).sum(1)
            lines.append(f"  same pairs per fold (10 folds): {folds.tolist()}")
        return "\n".join(lines)
    with FaceRecordDataset(path) as ds:
        return _describe_rec(path, ds)


def _describe_rec(path, ds) -> str:
    counts = np.bincount(ds.labels) if len(ds) else np.zeros(0, int)
    counts = counts[counts > 0]
    lines = [f"{path}: {ds.layout} RecordIO ({ds.reader.size} bytes, {len(ds.reader)} records)",
             f"  images: {len(ds)}", f"  identities: {len(counts)} (num_classes {ds.num_classes})"]
    if len(counts):
        lines.append(f"  images per identity: min {counts.min()}, median "
                     f"{int(np.median(counts))}, max {counts.max()}")
        lines.append(f"  first image: {ds[0][0].shape}")
    if ds.image_shape:
        lines.append(f"  property image size: {ds.image_shape[0]}x{ds.image_shape[1]}")
    return "\n".join(lines)
