"""Train a feed-forward approximator of a recurrent network's fixed points.

    python train.py task=wta                      # one run
    python train.py -m task=wta model.hidden=64,256   # a sweep
"""

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from rnn_ff.cli import exit_on_interrupt, exit_on_user_error, resolved_help
from rnn_ff.config import register_configs
from rnn_ff.training import USER_ERRORS, train

register_configs()
log = logging.getLogger("train")


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float:
    try:
        metrics = train(cfg)
    except USER_ERRORS as error:  # a mistake in the config or files: one clear line, no traceback
        exit_on_user_error(error, Path(cfg.paths.output_dir), log)
    except KeyboardInterrupt:  # one line: what is kept and the command that resumes this run
        exit_on_interrupt(Path(cfg.paths.output_dir), log)
    return metrics["val/rel_error"]  # the objective a sweeper minimises


if __name__ == "__main__":
    sys.argv = resolved_help(sys.argv)
    main()
