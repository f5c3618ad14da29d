"""Generate a config's dataset into the shared cache, whole or as shards run by separate jobs.

    python scripts/generate_data.py task=wta                          # the whole dataset, one process
    python scripts/generate_data.py -m task=wta data.n_shards=4 data.shard=0,1,2,3   # 4 shard jobs
    python scripts/generate_data.py task=wta data.n_shards=4          # merge the 4 shards (if not merged yet)

It composes the same config as train.py, so the dataset lands under the cache key that
training looks up (the shard count is not part of the key). The last shard job to finish
merges the set; `train.py` also merges a complete set it finds. Add `launcher=joblib`,
`launcher=submitit_local` or `launcher=submitit_slurm` to run the shard jobs in parallel.
"""

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from rnn_ff.cli import exit_on_user_error, resolved_help
from rnn_ff.config import register_configs, resolve_device, validate
from rnn_ff.data import generate_shard, load_or_generate, merge_shards
from rnn_ff.tasks import build_task
from rnn_ff.training import USER_ERRORS

register_configs()
log = logging.getLogger("generate_data")


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
def main(cfg: DictConfig) -> None:
    try:
        validate(cfg)
        device = resolve_device(cfg.device)
        task = build_task(cfg.task)
        if cfg.data.shard is not None:
            path = generate_shard(cfg, task, device, cfg.data.shard, cfg.data.n_shards)
        elif cfg.data.n_shards > 1:
            path = merge_shards(cfg, task)
        else:
            path = load_or_generate(cfg, task, device).path
    except USER_ERRORS as error:  # a mistake in the config or files: one clear line, no traceback
        exit_on_user_error(error, Path(cfg.paths.output_dir), log)
    log.info("dataset: %s", path)


if __name__ == "__main__":
    sys.argv = resolved_help(sys.argv)
    main()
