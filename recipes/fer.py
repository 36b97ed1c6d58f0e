"""Fine-tune the MobileViT-XXS facial-emotion classifier: `python recipes/fer.py --config recipes/fer/tiny.yaml`
(flags override the YAML)."""

from transformers import TrainingArguments
from trl import TrlParser

from evoxtral.configs import FerDataArguments, FerModelArguments
from evoxtral.fer.train import train_fer


def make_parser() -> TrlParser:
    return TrlParser((FerDataArguments, FerModelArguments, TrainingArguments))


if __name__ == "__main__":
    data_args, model_args, training_args = make_parser().parse_args_and_config()
    train_fer(data_args, model_args, training_args)
