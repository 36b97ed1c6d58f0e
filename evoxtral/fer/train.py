"""Fine-tuning the facial-emotion classifier with the transformers Trainer, and its test-split report: accuracy,
macro-F1 and a confusion matrix."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import torch
from transformers import EvalPrediction, Trainer, TrainerCallback, TrainingArguments, default_data_collator

from evoxtral.configs import FerDataArguments, FerModelArguments
from evoxtral.fer.data import fer_transform, load_fer_splits, make_demo_image_folder
from evoxtral.fer.model import (
    FER_LABELS,
    build_fer_model,
    build_image_processor,
    calibrate_batchnorm,
)
from evoxtral.publishing.hub import push_folder_to_hub
from evoxtral.publishing.model_card import write_fer_model_card
from evoxtral.publishing.summaries import log_fer_summary
from evoxtral.utils.checkpoints import checkpoint_to_resume
from evoxtral.utils.logging import setup_logging


class BatchNormCalibrationCallback(TrainerCallback):
    """Re-estimates BatchNorm statistics with the current weights whenever the model is about to be evaluated or
    saved, and at the end of training ("precise BN"). The running averages lag behind weights that move fast, as
    they do when training from random init, and an eval-mode model with lagging statistics predicts one class
    for every image."""

    def __init__(self, dataset, num_batches: int, batch_size: int, seed: int = 0):
        # A loader of its own: drawing from the Trainer's would disturb its epoch bookkeeping.
        self.loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=True,
            collate_fn=default_data_collator,
            generator=torch.Generator().manual_seed(seed),
        )
        self.num_batches = num_batches
        self.calibrated_at_step = -1

    def _calibrate(self, state, model) -> None:
        if self.calibrated_at_step == state.global_step:
            return
        device = next(model.parameters()).device
        batches = (batch["pixel_values"].to(device) for batch in itertools.islice(self.loader, self.num_batches))
        calibrate_batchnorm(model, batches)
        self.calibrated_at_step = state.global_step

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if control.should_evaluate or control.should_save:
            self._calibrate(state, model)

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        if control.should_evaluate or control.should_save:
            self._calibrate(state, model)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self._calibrate(state, model)


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts with true classes as rows and predicted classes as columns."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(labels), np.asarray(predictions)), 1)
    return matrix


def classification_scores(matrix: np.ndarray) -> dict[str, float]:
    """Accuracy and macro-F1 from a confusion matrix; the F1 mean runs over the classes that occur in the labels
    or the predictions, so a dataset without some class (FER2013 has no Contempt) is not penalised for it."""
    true_positives = np.diag(matrix).astype(float)
    support, predicted = matrix.sum(axis=1), matrix.sum(axis=0)
    present = (support + predicted) > 0
    f1 = 2 * true_positives[present] / (support[present] + predicted[present])
    return {
        "accuracy": float(true_positives.sum() / max(matrix.sum(), 1)),
        "macro_f1": float(f1.mean()) if present.any() else 0.0,
    }


def compute_fer_metrics(prediction: EvalPrediction) -> dict[str, float]:
    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    matrix = confusion_matrix(prediction.label_ids, logits.argmax(-1), logits.shape[-1])
    return classification_scores(matrix)


def plot_confusion_matrix(matrix: np.ndarray, labels: list[str], path: str | Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    row_totals = np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    figure, axes = plt.subplots(figsize=(7, 6))
    image = axes.imshow(matrix / row_totals, cmap="Blues", vmin=0, vmax=1)
    axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    for row in range(len(labels)):
        for column in range(len(labels)):
            share = matrix[row, column] / row_totals[row, 0]
            color = "white" if share > 0.5 else "black"
            axes.text(column, row, str(matrix[row, column]), ha="center", va="center", color=color, fontsize=8)
    figure.colorbar(image, ax=axes, label="share of the true class")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return Path(path)


def configured_splits(data_args: FerDataArguments, seed: int):
    """The train, validation and test splits (made from train when missing), each cut to its configured size."""
    if data_args.make_demo_dataset and not Path(data_args.dataset_name).is_dir():
        make_demo_image_folder(data_args.dataset_name, seed=seed)
    splits = load_fer_splits(
        data_args.dataset_name,
        data_args.dataset_config,
        image_column=data_args.image_column,
        label_column=data_args.label_column,
        split_names={
            "train": data_args.train_split,
            "validation": data_args.validation_split,
            "test": data_args.test_split,
        },
        holdout_size=data_args.holdout_size,
        seed=seed,
        cache_dir=data_args.cache_dir,
    )
    for split, limit in (
        ("train", data_args.max_train_samples),
        ("validation", data_args.max_eval_samples),
        ("test", data_args.max_eval_samples),
    ):
        if limit is not None and len(splits[split]) > limit:
            splits[split] = splits[split].shuffle(seed=seed).select(range(limit))
    return splits


def report_on_test_split(trainer: Trainer, test_split, train_loss: float, output_dir: Path, title: str) -> dict:
    """Accuracy, macro-F1 and the confusion matrix on the test split, saved as test_results.json and
    confusion_matrix.png in ``output_dir``."""
    prediction = trainer.predict(test_split, metric_key_prefix="test")
    matrix = confusion_matrix(prediction.label_ids, prediction.predictions.argmax(-1), len(FER_LABELS))
    report = {
        "train_loss": train_loss,
        "test_samples": len(test_split),
        **{f"test_{name}": value for name, value in classification_scores(matrix).items()},
        "confusion_matrix": matrix.tolist(),
        "labels": list(FER_LABELS),
    }
    (output_dir / "test_results.json").write_text(json.dumps(report, indent=2))
    plot_confusion_matrix(matrix, list(FER_LABELS), output_dir / "confusion_matrix.png", title)
    return report


def train_fer(data_args: FerDataArguments, model_args: FerModelArguments, training_args: TrainingArguments) -> dict:
    """Fine-tunes, saves the checkpoint folder (model + image processor: the export's input) with its model card,
    reports on the test split and optionally pushes to the Hub. Resumes from the last complete checkpoint in
    output_dir."""
    setup_logging(training_args)
    splits = configured_splits(data_args, training_args.seed)
    image_processor = build_image_processor(model_args.model_name_or_path)
    model = build_fer_model(model_args.model_name_or_path, FER_LABELS, model_args.require_pretrained)
    splits["train"].set_transform(fer_transform(image_processor, data_args.augment))
    for split in ("validation", "test"):
        splits[split].set_transform(fer_transform(image_processor, augment=False))

    # The image column is consumed by the transform, which the Trainer's column pruning would drop first.
    training_args.remove_unused_columns = False
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=splits["train"],
        eval_dataset=splits["validation"],
        processing_class=image_processor,
        compute_metrics=compute_fer_metrics,
    )
    if model_args.calibrate_batchnorm_batches > 0:
        trainer.add_callback(
            BatchNormCalibrationCallback(
                splits["train"],
                model_args.calibrate_batchnorm_batches,
                training_args.per_device_train_batch_size,
                training_args.seed,
            )
        )
    resume_from = checkpoint_to_resume(training_args.output_dir, training_args.resume_from_checkpoint, True)
    train_result = trainer.train(resume_from_checkpoint=resume_from)
    trainer.save_model(training_args.output_dir)
    trainer.save_state()

    output_dir = Path(training_args.output_dir)
    title = f"{data_args.dataset_name}: test split"
    report = report_on_test_split(trainer, splits["test"], train_result.training_loss, output_dir, title)
    if trainer.is_world_process_zero():
        write_fer_model_card(
            output_dir,
            base_model=model.name_or_path or None,  # empty when the backbone fell back to random init
            dataset=data_args.dataset_name,
            report=report,
            training_args=training_args,
        )
        if training_args.push_to_hub:
            push_folder_to_hub(training_args, stage="FER")
        log_fer_summary(
            str(output_dir),
            train_images=len(splits["train"]),
            steps=train_result.global_step,
            report=report,
            plot_path=output_dir / "confusion_matrix.png",
        )
    return report
