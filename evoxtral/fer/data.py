"""Image-folder datasets for the facial-emotion classifier: loading, label alignment, augmentation, and a tiny
pipeline-check dataset built from photos that ship inside installed packages."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
from datasets import ClassLabel, DatasetDict, load_dataset
from PIL import Image, ImageEnhance, ImageOps
from tqdm.auto import tqdm

from evoxtral.fer.model import FER_LABELS

SPLITS = ("train", "validation", "test")

# Spellings other emotion datasets use for the AffectNet classes (FER2013, RAF-DB, ...).
LABEL_ALIASES = {
    "angry": "Anger",
    "disgusted": "Disgust",
    "fearful": "Fear",
    "happiness": "Happy",
    "sadness": "Sad",
    "surprised": "Surprise",
}


def bundled_face_photos() -> dict[str, np.ndarray]:
    """Real photos of faces that ship inside installed packages (RGB uint8): scikit-image's astronaut
    (Eileen Collins) and cameraman, and matplotlib's Grace Hopper."""
    from matplotlib import cbook
    from skimage import data

    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as hopper:
        hopper_rgb = np.asarray(hopper.convert("RGB"))
    return {
        "astronaut": data.astronaut(),
        "grace_hopper": hopper_rgb,
        "cameraman": np.stack([data.camera()] * 3, axis=-1),
    }


def lfw_faces() -> np.ndarray:
    """scikit-image's 100 real 25x25 grey face crops from Labeled Faces in the Wild, as uint8 (100, 25, 25)."""
    from skimage import data

    return (data.lfw_subset()[:100] * 255).round().astype(np.uint8)


def _demo_sources() -> list[Callable[[random.Random, str], Image.Image]]:
    """One picture source per FER class (in FER_LABELS order), so that the class is learnable from the picture."""
    from skimage import data

    faces = bundled_face_photos()
    lfw = lfw_faces()
    # (x, y, width, height) of each head: the frontal-face cascade's box widened to the hair and chin (the
    # cameraman is in three-quarter profile, which the cascade misses).
    face_regions = {
        "astronaut": (140, 30, 170, 170),
        "grace_hopper": (100, 50, 330, 330),
        "cameraman": (140, 50, 150, 150),
    }

    def region_of(name: str) -> Callable[[random.Random, str], Image.Image]:
        x, y, w, h = face_regions[name]
        photo = Image.fromarray(faces[name]).crop((x, y, x + w, y + h))
        return lambda rng, split: photo

    def photo(array: np.ndarray) -> Callable[[random.Random, str], Image.Image]:
        picture = Image.fromarray(array).convert("RGB")
        return lambda rng, split: picture

    # Disjoint LFW faces per split, so test faces are people the model has not seen.
    lfw_by_split = {"train": lfw[:60], "validation": lfw[60:80], "test": lfw[80:]}

    def lfw_face(rng: random.Random, split: str) -> Image.Image:
        return Image.fromarray(lfw_by_split[split][rng.randrange(len(lfw_by_split[split]))]).convert("RGB")

    return [
        region_of("astronaut"),
        region_of("grace_hopper"),
        region_of("cameraman"),
        lfw_face,
        photo(data.chelsea()),
        photo(data.coffee()),
        photo(data.rocket()),
        photo(data.immunohistochemistry()),
    ]


def make_demo_image_folder(
    output_dir: str | Path, images_per_class: dict[str, int] | None = None, size: int = 160, seed: int = 0
) -> Path:
    """Writes `output_dir/{train,validation,test}/<FER label>/*.png`: random crops, flips and lighting changes
    of real photos, one photo per class. A check that the training pipeline runs and learns, not a facial
    expression dataset: the labels name emotions only so the 8-class head has something to fit."""
    images_per_class = images_per_class or {"train": 16, "validation": 4, "test": 4}
    output_dir = Path(output_dir)
    rng = random.Random(seed)
    sources = _demo_sources()
    total = len(FER_LABELS) * sum(images_per_class.values())
    with tqdm(total=total, desc="Demo FER images", unit="img") as progress:
        for split, count in images_per_class.items():
            for label, source in zip(FER_LABELS, sources):
                class_dir = output_dir / split / label
                class_dir.mkdir(parents=True, exist_ok=True)
                for index in range(count):
                    picture = augment_face(source(rng, split), rng, min_scale=0.6)
                    picture.resize((size, size), Image.Resampling.BILINEAR).save(class_dir / f"{index:03d}.png")
                    progress.update()
    return output_dir


def augment_face(image: Image.Image, rng: random.Random, min_scale: float = 0.75) -> Image.Image:
    """Standard light augmentation for face crops: a random resized crop, a horizontal flip, a small rotation
    and brightness/contrast/saturation jitter."""
    image = image.convert("RGB")
    width, height = image.size
    scale = rng.uniform(min_scale, 1.0)
    aspect = rng.uniform(0.9, 1.1)
    crop_w = min(width, max(1, round(width * np.sqrt(scale * aspect))))
    crop_h = min(height, max(1, round(height * np.sqrt(scale / aspect))))
    left, top = rng.randint(0, width - crop_w), rng.randint(0, height - crop_h)
    image = image.crop((left, top, left + crop_w, top + crop_h))
    if rng.random() < 0.5:
        image = ImageOps.mirror(image)
    image = image.rotate(rng.uniform(-10, 10), resample=Image.Resampling.BILINEAR)
    for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        image = enhancer(image).enhance(rng.uniform(0.8, 1.2))
    return image


def _fer_index_of(name: str) -> int:
    by_lower_name = {label.lower(): i for i, label in enumerate(FER_LABELS)}
    lower = name.strip().lower()
    if lower in LABEL_ALIASES:
        lower = LABEL_ALIASES[lower].lower()
    if lower not in by_lower_name:
        raise ValueError(f"Dataset class {name!r} is not one of the FER classes {list(FER_LABELS)}")
    return by_lower_name[lower]


def align_labels_to_fer(splits: DatasetDict, label_column: str = "label") -> DatasetDict:
    """Renumbers the dataset's class labels (matched by name, case-insensitively, with common aliases) to the
    order of FER_LABELS; datasets without some class (e.g. FER2013 has no Contempt) keep working."""
    feature = next(iter(splits.values())).features[label_column]
    if not isinstance(feature, ClassLabel):
        raise ValueError(f"Column {label_column!r} must be a ClassLabel (named classes), got {feature}")
    remap = [_fer_index_of(name) for name in feature.names]
    if remap == list(range(len(FER_LABELS))):
        return splits
    features = next(iter(splits.values())).features.copy()
    features[label_column] = ClassLabel(names=list(FER_LABELS))
    return splits.map(
        lambda batch: {label_column: [remap[label] for label in batch[label_column]]},
        batched=True,
        features=features,
        desc="Aligning labels to the FER classes",
    )


def load_fer_splits(
    dataset_name: str,
    dataset_config: str | None = None,
    image_column: str = "image",
    label_column: str = "label",
    split_names: dict[str, str] | None = None,
    holdout_size: float = 0.1,
    seed: int = 42,
    cache_dir: str | None = None,
) -> DatasetDict:
    """Loads an image classification dataset (a local image folder `<dir>/<split>/<class>/*` or a Hub dataset
    id) as train/validation/test splits with columns `image` and `label` in FER_LABELS order. A missing
    validation or test split is held out of train (`holdout_size` of its rows each, stratified by class)."""
    split_names = {**{split: split for split in SPLITS}, **(split_names or {})}
    if Path(dataset_name).is_dir():
        raw = load_dataset("imagefolder", data_dir=dataset_name, cache_dir=cache_dir)
    else:
        raw = load_dataset(dataset_name, dataset_config, cache_dir=cache_dir)
    missing = [column for column in (image_column, label_column) if column not in raw[split_names["train"]].features]
    if missing:
        raise ValueError(f"{dataset_name} has no column {missing}; columns: {list(raw['train'].features)}")
    splits = DatasetDict({split: raw[split_names[split]] for split in SPLITS if split_names[split] in raw})
    splits = splits.select_columns([image_column, label_column])
    if image_column != "image":
        splits = splits.rename_column(image_column, "image")
    if label_column != "label":
        splits = splits.rename_column(label_column, "label")
    splits = align_labels_to_fer(splits, "label")
    holdout_rows = max(1, round(holdout_size * len(splits["train"])))
    for split in ("test", "validation"):
        if split not in splits:
            held_out = splits["train"].train_test_split(test_size=holdout_rows, stratify_by_column="label", seed=seed)
            splits["train"], splits[split] = held_out["train"], held_out["test"]
    return splits


def fer_transform(image_processor, augment: bool) -> Callable[[dict], dict]:
    """A `datasets.set_transform` function: (augmented) PIL images -> the model's pixel values and labels."""

    def transform(batch: dict) -> dict:
        images = [image.convert("RGB") for image in batch["image"]]
        if augment:
            # Drawn from the global state, which the Trainer seeds and each DataLoader worker re-seeds.
            rng = random.Random(random.getrandbits(64))
            images = [augment_face(image, rng) for image in images]
        pixel_values = image_processor(images=images, return_tensors="np")["pixel_values"]
        return {"pixel_values": list(pixel_values), "labels": batch["label"]}

    return transform
