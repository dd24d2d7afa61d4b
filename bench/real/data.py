"""The three real face data sets of the comparison, prepared with the suite's own converters.

Sources (``../shared/data``, provenance and terms in its README; never copied into the repo):

- ``att_faces``: AT&T/ORL, 40 identities x 10 greyscale 92x112 PGM images.
- ``cropped_yale_b``: Cropped Extended Yale B, 38 identities x 59-64 greyscale 168x192 PGM.
- ``lfw_view1``: LFW aligned 112x112 RGB JPEG with the official View 1 development split.

The photo-folder sets go through ``common.convert.convert_folder``: a quarter of the identities
(rounded, at least 2) drawn with a fixed seed are held out of training, and the verification
pairs are built from them only, 10 folds of half same / half different pairs (LFW's layout);
greyscale becomes RGB in the converter. ``lfw_view1`` trains on the DevTrain people with at
least two images (``common.lfw.people_to_rec``) and verifies on the 1,000 ``pairsDevTest.txt``
pairs. That file lists 500 same pairs then 500 different pairs; written in file order, the
10-fold protocol would see five all-same folds and five all-different ones, so the ``.bin``
interleaves them: fold f = same pairs 50f..50f+49, then different pairs 50f..50f+49 (the
order of each block as in the file, as InsightFace's lfw.bin interleaves View 2's folds).
DevTest people are checked to be absent from the training set (an error names them).

Every folder gets ``real_data.json`` (what was built from what). Its files' mtimes are pinned to
``PINNED_MTIME_NS`` because the harness fingerprints data files by size and mtime: the build is
deterministic, so a rebuilt folder (a fresh checkout, say) keeps the finished cells valid.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from common.binfile import write_bin
from common.convert import convert_folder, load_encoded, scan_folder
from common.lfw import image_path, parse_pairs, parse_people, people_to_rec

DEFAULT_SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
DEFAULT_ROOT = Path("data/real")
MANIFEST = "real_data.json"
PINNED_MTIME_NS = 1_700_000_000 * 10**9
NUM_FOLDS = 10


@dataclass(frozen=True)
class PhotoFolderSet:
    """A photo folder with a quarter of its identities held out for verification pairs."""

    source: str  # folder under the shared data root
    pairs: int  # verification pairs (multiple of 20)
    heldout_fraction: float = 0.25
    seed: int = 0
    bin_name: str = "heldout.bin"


@dataclass(frozen=True)
class LfwView1Set:
    """LFW View 1: DevTrain people with >= ``min_images`` images; pairsDevTest for verification."""

    source: str = "lfw"
    min_images: int = 2
    bin_name: str = "lfw_devtest.bin"


# Pair counts: ORL's 10 held-out identities allow 450 distinct same pairs, so 600 pairs (300
# same); Yale B's ~630 held-out images allow far more, 1,000 keeps the per-epoch evaluation as
# cheap as LFW's 1,000 DevTest pairs.
DATASETS = {
    "att_faces": PhotoFolderSet(source="att_faces", pairs=600),
    "cropped_yale_b": PhotoFolderSet(source="cropped_yale_b", pairs=1000),
    "lfw_view1": LfwView1Set(),
}


def heldout_count(num_identities: int, fraction: float) -> int:
    """Held-out identities: ``round(fraction * n)``, at least 2, leaving at least 1 to train."""
    if not 0 < fraction < 1:
        raise ValueError(f"heldout_fraction must be in (0, 1), got {fraction!r}")
    if num_identities < 3:
        raise ValueError(f"a photo folder needs >= 3 identities to hold some out, got "
                         f"{num_identities}")
    return min(num_identities - 1, max(2, round(fraction * num_identities)))


def prepare_photo_folder(spec: PhotoFolderSet, source: Path, out: Path, size: int = 112,
                         progress: bool = True) -> dict:
    """``source`` (root/<identity>/<images>) -> ``out`` via ``common.convert.convert_folder``."""
    n = len(scan_folder(source))
    held = heldout_count(n, spec.heldout_fraction)
    summary = convert_folder(source, out, size=size, heldout=held, num_pairs=spec.pairs,
                             seed=spec.seed, bin_name=spec.bin_name, progress=progress)
    return {"kind": "photo_folder", "source": str(source), "identities": n,
            "heldout_identities": summary["heldout"], "train_identities":
            summary["train_identities"], "train_images": summary["train_images"],
            "pairs": summary["pairs"], "bin": spec.bin_name, "seed": spec.seed,
            "image_size": size}


def interleave_folds(pairs: list, num_folds: int = NUM_FOLDS) -> list:
    """View 1 order (all same, then all different) -> ``num_folds`` folds of half/half pairs."""
    same = [p for p in pairs if p[4]]
    diff = [p for p in pairs if not p[4]]
    if len(same) != len(diff) or len(same) % num_folds:
        raise ValueError(f"pairs: need equal same/different counts divisible by {num_folds} "
                         f"folds, got {len(same)} same and {len(diff)} different")
    per = len(same) // num_folds
    out = []
    for f in range(num_folds):
        out += same[f * per:(f + 1) * per] + diff[f * per:(f + 1) * per]
    return out


def check_disjoint(train_names, test_people_file, pairs) -> None:
    """Raise ValueError if a DevTest person, or a person named in a test pair, is trained on."""
    train = set(train_names)
    test = {name for name, _ in parse_people(test_people_file)}
    in_pairs = {p[0] for p in pairs} | {p[2] for p in pairs}
    stray = sorted(in_pairs - test)
    if stray:
        raise ValueError(f"{test_people_file}: test pairs name people not in the DevTest list: "
                         f"{', '.join(stray[:5])}")
    leaked = sorted((test | in_pairs) & train)
    if leaked:
        raise ValueError(f"{len(leaked)} test people are in the training set (View 1 split is "
                         f"not identity-disjoint): {', '.join(leaked[:5])}")


def prepare_lfw_view1(spec: LfwView1Set, source: Path, out: Path, size: int = 112,
                      progress: bool = True) -> dict:
    """LFW images + View 1 lists -> ``out``/train.rec (DevTrain) + ``spec.bin_name`` (DevTest)."""
    images, view1 = source / "images", source / "view1"
    pairs, _ = parse_pairs(view1 / "pairsDevTest.txt")
    pairs = interleave_folds(pairs)
    # check before writing anything: a bad split must not leave a half-built folder behind
    train_people = [n for n, k in parse_people(view1 / "peopleDevTrain.txt")
                    if k >= spec.min_images]
    check_disjoint(train_people, view1 / "peopleDevTest.txt", pairs)
    summary = people_to_rec(images, view1 / "peopleDevTrain.txt", out, size=size,
                            min_images=spec.min_images, progress=progress)
    cache, bins = {}, []
    for n1, i1, n2, i2, _ in pairs:
        for name, k in ((n1, i1), (n2, i2)):
            path = image_path(images, name, k)
            if path not in cache:
                if not path.is_file():
                    raise FileNotFoundError(f"{path}: image of {name} #{k} (pairsDevTest) "
                                            "not found")
                cache[path] = load_encoded(path, size)
            bins.append(cache[path])
    write_bin(out / spec.bin_name, bins, [p[4] for p in pairs])
    check_disjoint(summary["labels"], view1 / "peopleDevTest.txt", pairs)
    return {"kind": "lfw_view1", "source": str(source), "train_identities":
            len(summary["labels"]), "train_images": summary["images"], "min_images":
            spec.min_images, "pairs": len(pairs), "bin": spec.bin_name, "image_size": size,
            "pair_order": "10 folds x (50 same + 50 different), file order within each block"}


def is_prepared(out: Path) -> bool:
    out = Path(out)
    return (out / MANIFEST).is_file() and all(
        (out / n).is_file() for n in ("train.rec", "train.idx", "property"))


def manifest(out: Path) -> dict:
    """The ``real_data.json`` of a prepared folder (what was built from what)."""
    path = Path(out) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not a prepared real data set (run bench.real.data."
                                "prepare)")
    return json.loads(path.read_text())


def prepare(name: str, shared: Path = DEFAULT_SHARED, root: Path = DEFAULT_ROOT,
            size: int = 112, force: bool = False, progress: bool = True) -> Path:
    """Build ``root/<name>`` from ``shared/<source>`` unless it is there; returns the folder."""
    if name not in DATASETS:
        raise ValueError(f"dataset must be one of {', '.join(DATASETS)}, got {name!r}")
    spec = DATASETS[name]
    out = Path(root) / name
    if is_prepared(out) and not force:
        return out
    source = Path(shared) / spec.source
    if not source.is_dir():
        raise FileNotFoundError(f"{source}: source of {name} not found (pass --shared, the "
                                "folder holding att_faces/, cropped_yale_b/ and lfw/)")
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)  # written last: its presence means "complete"
    if isinstance(spec, PhotoFolderSet):
        manifest = prepare_photo_folder(spec, source, out, size, progress)
    else:
        manifest = prepare_lfw_view1(spec, source, out, size, progress)
    manifest["dataset"] = name
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1))
    for p in out.iterdir():
        if p.is_file():
            os.utime(p, ns=(PINNED_MTIME_NS, PINNED_MTIME_NS))
    return out


def resolve(data: Path | None, name: str | None, shared: Path, root: Path,
            progress: bool = True) -> tuple[Path, dict]:
    """(data folder, its source description) of a command's ``--data`` (a prepared folder) or
    ``--dataset`` (prepared from ``shared`` into ``root`` if missing)."""
    if data is not None:
        data = Path(data)
        return data, (manifest(data) if (data / MANIFEST).is_file() else {"folder": str(data)})
    data = prepare(name, shared, root, progress=progress)
    return data, manifest(data)
