"""Input sets users give: the inputs a network was trained on, from a file or a tensor.

A network trained on a task sees its own inputs (a fixation channel that is 0 or 1, evidence at a
few coherences, a one-hot context cue); an FF fitted on a uniform box would be fitted and scored
on inputs the network never sees. An input set is either one n x D array, from which the
dataset's splits are drawn without replacement with the dataset seed, or three arrays `train`,
`val` and `test`, each split taken from its own (in the file's order, a seeded subset when fewer
are asked for).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Mapping, Sequence

import torch

from rnn_ff.tasks.arrays import array_digest, as_float64, read_source
from rnn_ff.tasks.base import TaskConfigError

SPLIT_NAMES = ("train", "val", "test")
ONE_ARRAY = "inputs"  # the name of an input set's rows when it is not split ahead
IN_PYTHON = "<inputs given in Python>"  # task.inputs.file of an input set made from tensors


@dataclass
class InputSet:
    arrays: dict[str, torch.Tensor]  # {"inputs": n x D} or {"train", "val", "test"}: each n_split x D, float64
    source: str  # the file (or IN_PYTHON), for messages
    replace: bool = False  # draw with replacement (inputs repeat, and splits share inputs)
    key: str = "task.inputs.file"  # the config key that named it, for messages

    @classmethod
    def read(cls, source: str, replace: bool = False, key: str = "task.inputs.file") -> InputSet:
        return cls.of(read_source(source, key), source, replace, key)

    @classmethod
    def of(cls, content: torch.Tensor | Mapping, source: str = IN_PYTHON, replace: bool = False,
           key: str = "task.inputs.file") -> InputSet:
        """From one array or a dict holding train, val and test (any other entries are ignored)."""
        if isinstance(content, Mapping):
            missing = [name for name in SPLIT_NAMES if name not in content]
            if missing:
                raise TaskConfigError(f"{key}: {source} holds {sorted(content)}; an input set is one "
                                      f"n x D array or the three arrays {', '.join(SPLIT_NAMES)} (missing "
                                      f"{', '.join(missing)}); name one array as file:<name>")
            arrays = {name: as_float64(content[name], f"{source}:{name}", key) for name in SPLIT_NAMES}
        else:
            arrays = {ONE_ARRAY: as_float64(content, source, key)}
        widths = set()
        for name, array in arrays.items():
            if array.ndim != 2 or len(array) == 0:
                raise TaskConfigError(f"{key}: {source} ({name}) must hold an n x D array of inputs, "
                                      f"got shape {tuple(array.shape)}")
            widths.add(array.shape[1])
        if len(widths) > 1:
            raise TaskConfigError(f"{key}: {source}: the splits have different widths "
                                  f"{ {name: tuple(a.shape) for name, a in arrays.items()} }")
        return cls(arrays, source, replace, key)

    @property
    def split_ahead(self) -> bool:
        return ONE_ARRAY not in self.arrays

    @property
    def width(self) -> int:
        return next(iter(self.arrays.values())).shape[1]

    def check_width(self, n_inputs: int) -> None:
        if self.width != n_inputs:
            shapes = ", ".join(f"{name} {tuple(a.shape)}" if self.split_ahead else str(tuple(a.shape))
                               for name, a in self.arrays.items())
            raise TaskConfigError(f"{self.key}: {self.source} holds inputs of shape {shapes}, but the "
                                  f"network's input matrix takes D={n_inputs} inputs")

    @cached_property
    def digest(self) -> str:
        """SHA-256 of the content, computed once (a large set's checkpoints name it every epoch)."""
        return array_digest(self.arrays)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n rows drawn with replacement from all the set's rows: its empirical distribution."""
        rows = torch.cat(list(self.arrays.values()))
        return rows[torch.randint(len(rows), (n,), generator=generator)]

    def draw(self, layout: Sequence[tuple[str, int]], seed: int) -> torch.Tensor:
        """A dataset's inputs, the splits of `layout` ((split, size) pairs) one after another."""
        generator = torch.Generator().manual_seed(seed)
        if not self.split_ahead:
            total = sum(n for _, n in layout)
            asked = " + ".join(f"data.n_{split}={n}" for split, n in layout)
            rows = self.arrays[ONE_ARRAY]
            return rows[self._choose(len(rows), total, generator, f"inputs, fewer than {asked} ask for", False)]
        parts = []
        for split, n in layout:
            rows = self.arrays[split]
            parts.append(rows[self._choose(len(rows), n, generator, f"{split} inputs, fewer than data.n_{split}={n}",
                                           True)])
        return torch.cat(parts)

    def _choose(self, available: int, n: int, generator: torch.Generator, shortfall: str,
                in_file_order: bool) -> torch.Tensor:
        if self.replace:
            return torch.randint(available, (n,), generator=generator)
        if n > available:
            raise TaskConfigError(f"{self.key}: {self.source} holds {available} {shortfall}; ask for fewer "
                                  "or set task.inputs.replace=true (draws with replacement: inputs repeat, and "
                                  "the splits share inputs)")
        chosen = torch.randperm(available, generator=generator)[:n]
        return chosen.sort().values if in_file_order else chosen
