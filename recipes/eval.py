"""Evaluate one or more models (+ adapters) on a dataset split with Evoxtral-Bench and write paper-style tables.

    python recipes/eval.py --config recipes/tiny/eval.yaml
    python recipes/eval.py --config recipes/voxtral-mini-3b/eval.yaml --models base=mistralai/Voxtral-Mini-3B-2507 \\
        sft=mistralai/Voxtral-Mini-3B-2507+outputs/evoxtral/sft --bootstrap 1000

Command-line flags override the YAML. Outputs: predictions/*.jsonl, metrics.json, report.md, per_tag_f1.png.
"""

from trl import TrlParser

from evoxtral.configs import EvalArguments
from evoxtral.evaluation.run import run_evaluation


def make_parser() -> TrlParser:
    return TrlParser((EvalArguments,))


if __name__ == "__main__":
    (eval_args,) = make_parser().parse_args_and_config()
    run_evaluation(eval_args)
