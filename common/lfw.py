"""Labeled Faces in the Wild protocol files -> InsightFace data files.

- ``pairs.txt`` (View 2: header ``10 300``, then per fold 300 ``name i j`` same pairs and 300
  ``name1 i name2 j`` different pairs) or View 1's ``pairsDevTrain/DevTest.txt`` (header
  ``1100`` / ``500``: that many same pairs, then as many different pairs) -> a verification
  ``.bin`` with the pairs in file order, so the file's folds are exactly the 10 consecutive folds
  of the evaluation protocol (as InsightFace's lfw.bin).
- View 1 ``peopleDevTrain.txt`` / ``peopleDevTest.txt`` (count line, then ``name n`` lines) ->
  a ``train.rec`` of those people (identities with fewer than ``min_images`` images skipped).

Images live at ``<images>/<Name>/<Name>_<NNNN>.jpg``. An image that already has the target
size is stored as its original encoded bytes (re-encoding a JPEG changes its pixels); others
are resized/padded and JPEG-encoded. A missing image is an error naming its path.

Reference: G. B. Huang et al., "Labeled Faces in the Wild", UMass Amherst TR 07-49, 2007.
"""

from __future__ import annotations

import json
from pathlib import Path

from tqdm import tqdm

from common.binfile import write_bin
from common.convert import load_encoded
from common.face_dataset import FaceRecordWriter


def image_path(images, name: str, number: int) -> Path:
    return Path(images) / name / f"{name}_{number:04d}.jpg"


def _lines(path):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: protocol file not found")
    rows = [(n, line.split()) for n, line in enumerate(path.read_text().splitlines(), 1)]
    rows = [(n, f) for n, f in rows if f]
    if not rows:
        raise ValueError(f"{path}: empty file")
    return path, rows


def _int(path, lineno, text):
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{path}, line {lineno}: expected an integer, got {text!r}") from None
    if value < 0:
        raise ValueError(f"{path}, line {lineno}: expected a non-negative integer, got {value}")
    return value


def parse_pairs(path):
    """A pairs file -> (pairs [(name1, i1, name2, i2, same)], num_folds).

    Header ``F N``: F folds of N same then N different pairs; header ``N``: one block of N same
    then N different pairs (View 1). The line count and the same/different order are checked.
    """
    path, rows = _lines(path)
    (hline, header), body = rows[0], rows[1:]
    if len(header) not in (1, 2):
        raise ValueError(f"{path}, line {hline}: header must be 'folds per_fold' or 'count', "
                         f"got {' '.join(header)!r}")
    folds, per = (1, _int(path, hline, header[0])) if len(header) == 1 else (
        _int(path, hline, header[0]), _int(path, hline, header[1]))
    if len(body) != 2 * folds * per:
        raise ValueError(f"{path}: header says {folds} x (2 x {per}) = {2 * folds * per} pairs, "
                         f"file has {len(body)} pair lines")
    pairs = []
    for k, (lineno, f) in enumerate(body):
        expect_same = (k % (2 * per)) < per
        if len(f) == 3:
            pair = (f[0], _int(path, lineno, f[1]), f[0], _int(path, lineno, f[2]), True)
        elif len(f) == 4:
            pair = (f[0], _int(path, lineno, f[1]), f[2], _int(path, lineno, f[3]), False)
        else:
            raise ValueError(f"{path}, line {lineno}: expected 'name i j' or 'name1 i name2 j', "
                             f"got {' '.join(f)!r}")
        if pair[4] != expect_same:
            raise ValueError(f"{path}, line {lineno}: expected a "
                             f"{'same' if expect_same else 'different'} pair here (each fold "
                             f"holds {per} same then {per} different pairs)")
        pairs.append(pair)
    return pairs, folds


def parse_people(path):
    """A View 1 people file -> [(name, number of images)]; the count line is checked."""
    path, rows = _lines(path)
    (hline, header), body = rows[0], rows[1:]
    if len(header) != 1:
        raise ValueError(f"{path}, line {hline}: header must be the number of people")
    count = _int(path, hline, header[0])
    if len(body) != count:
        raise ValueError(f"{path}: header says {count} people, file lists {len(body)}")
    people = []
    for lineno, f in body:
        if len(f) != 2:
            raise ValueError(f"{path}, line {lineno}: expected 'name n', got {' '.join(f)!r}")
        people.append((f[0], _int(path, lineno, f[1])))
    return people


def _encoded(images, name, number, size, quality, cache):
    path = image_path(images, name, number)
    if path not in cache:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: image of {name} #{number} not found")
        cache[path] = load_encoded(path, size, quality)
    return cache[path]


def pairs_to_bin(images, pairs_file, out_path, size: int = 112, quality: int = 95,
                 progress: bool = True) -> int:
    """LFW-style images + a pairs file -> verification .bin (pairs in file order); returns P."""
    pairs, _ = parse_pairs(pairs_file)
    cache, bins = {}, []
    for n1, i1, n2, i2, _ in tqdm(pairs, desc="pairs", unit="pair", disable=not progress):
        bins.append(_encoded(images, n1, i1, size, quality, cache))
        bins.append(_encoded(images, n2, i2, size, quality, cache))
    write_bin(out_path, bins, [p[4] for p in pairs])
    return len(pairs)


def people_to_rec(images, people_file, out_dir, size: int = 112, min_images: int = 2,
                  quality: int = 95, progress: bool = True) -> dict:
    """LFW-style images + a View 1 people file -> ``out_dir``/train.rec/.idx/property and
    ``identities.json`` (label -> name, in file order, people with < ``min_images`` skipped)."""
    if int(min_images) < 1:
        raise ValueError(f"min_images must be >= 1, got {min_images}")
    people = [(name, n) for name, n in parse_people(people_file) if n >= min_images]
    if not people:
        raise ValueError(f"{people_file}: no person has >= {min_images} images")
    names = []
    with FaceRecordWriter(out_dir, size) as writer:
        for name, n in tqdm(people, desc="people", unit="id", disable=not progress):
            writer.add_identity([_encoded(images, name, k, size, quality, {})
                                 for k in range(1, n + 1)])
            names.append(name)
        num_images = writer.num_images
    summary = {"source": str(images), "people_file": str(people_file), "min_images": min_images,
               "image_size": size, "images": num_images, "labels": names}
    (Path(out_dir) / "identities.json").write_text(json.dumps(summary, indent=1))
    return summary
