"""Export a trained approximator for use without rnn_ff: TorchScript and ONNX.

    python scripts/export.py checkpoint=outputs/runs/wta/<time>/checkpoints/best.pt [out_dir=exported] [format=all]

format=torchscript | onnx | all (default). Writes <name>.torchscript.pt (load with
torch.jit.load) and <name>.onnx (needs the `onnx` package: pip install -e ".[export]"; without
it, format=all writes the TorchScript file and exits with an error naming the extra)
into out_dir (default: the checkpoint's folder); name defaults to the checkpoint's stem.
Both map raw inputs (B x D, float32) to rates (B x N): the input and target normalisation
is inside the exported graph, and the batch size is free. Each export is loaded back and
checked against the PyTorch model on n_check inputs drawn from the task's input
distribution; the script fails if the max abs difference exceeds `tolerance`. ONNX is
checked with onnxruntime when it is installed. The last stdout line is one JSON object.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from rnn_ff.checkpoint import approximator_from, load_checkpoint, task_from
from rnn_ff.cli import parse_overrides, run

FORMATS = ("torchscript", "onnx", "all")
ONNX_MISSING = ("ONNX export needs the `onnx` package, which is not installed; install the export extra: "
                "pip install -e \".[export]\" (onnx, onnxscript, onnxruntime)")


@dataclass
class ExportConfig:
    checkpoint: str = "???"
    out_dir: Optional[str] = None  # default: the checkpoint's folder
    format: str = "all"  # torchscript | onnx | all (without onnx installed, all writes TorchScript and fails)
    name: Optional[str] = None  # file stem; default: the checkpoint's stem (best -> best.onnx)
    n_check: int = 256  # inputs drawn from the task's distribution to compare outputs on
    seed: int = 0
    tolerance: float = 1e-5  # max abs difference allowed between an export and the PyTorch model


def available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def check_inputs(checkpoint: dict, n: int, seed: int) -> torch.Tensor:
    """Inputs from the task's own input distribution (as evaluate.py draws them)."""
    inputs, _ = task_from(checkpoint).sample(n, torch.Generator().manual_seed(seed))
    return inputs.to(torch.float32)


def max_abs_diff(a, b) -> float:
    return float((torch.as_tensor(a, dtype=torch.float64) - torch.as_tensor(b, dtype=torch.float64)).abs().max())


def export_torchscript(model: torch.nn.Module, example: torch.Tensor, path: Path, metadata: dict) -> None:
    with warnings.catch_warnings():  # torch.jit is deprecated upstream, but TorchScript files still load anywhere
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, example)
        torch.jit.save(traced, str(path), _extra_files={"rnn_ff.json": json.dumps(metadata)})


def load_torchscript(path: Path) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.load(str(path), map_location="cpu")


def export_onnx(model: torch.nn.Module, example: torch.Tensor, path: Path) -> str:
    """The TorchScript-based exporter (needs only `onnx`, fast); the dynamo exporter if that one is gone."""
    names = {"input_names": ["inputs"], "output_names": ["rates"]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(model, (example,), str(path), dynamo=False,
                              dynamic_axes={"inputs": {0: "batch"}, "rates": {0: "batch"}}, **names)
            return "torchscript-based"
        except Exception as error:  # noqa: BLE001 - e.g. a torch without the legacy exporter
            print(f"note: the TorchScript-based ONNX exporter failed ({error}); trying the dynamo exporter",
                  file=sys.stderr)
        torch.onnx.export(model, (example,), str(path), dynamo=True, external_data=False,
                          dynamic_shapes={"inputs": {0: torch.export.Dim("batch")}}, **names)
        return "dynamo"


def run_onnx(path: Path, inputs: torch.Tensor):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: inputs.numpy()})[0]


def main(argv: list[str]) -> dict:
    args = parse_overrides(ExportConfig, argv)
    if args.format not in FORMATS:
        raise SystemExit(f"error: format={args.format!r} is invalid; allowed: {', '.join(FORMATS)}")
    if args.n_check < 1:
        raise SystemExit(f"error: n_check={args.n_check} is invalid: must be >= 1")
    want_onnx = args.format in ("onnx", "all")
    has_onnx = available("onnx")
    if args.format == "onnx" and not has_onnx:
        raise SystemExit(f"error: {ONNX_MISSING}")

    checkpoint_path = Path(args.checkpoint)
    checkpoint = load_checkpoint(checkpoint_path)
    model = approximator_from(checkpoint).to("cpu", torch.float32)
    out_dir = Path(args.out_dir) if args.out_dir else checkpoint_path.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = args.name or checkpoint_path.stem
    inputs = check_inputs(checkpoint, args.n_check, args.seed)
    with torch.no_grad():
        expected = model(inputs)
    example = inputs[: min(2, len(inputs))]  # traced on 2 rows, checked on n_check: the batch size is free
    metadata = {"task": checkpoint["task"], "model_hparams": checkpoint["model_hparams"],
                "checkpoint": str(checkpoint_path), "input": "raw task inputs (B x D), float32",
                "output": "fixed-point rates (B x N)"}
    report = {"checkpoint": str(checkpoint_path), "task": checkpoint["task"], "n_check": len(inputs),
              "n_inputs": model.hparams["n_inputs"], "n_outputs": model.hparams["n_outputs"]}
    failures = []

    if args.format in ("torchscript", "all"):
        path = out_dir / f"{stem}.torchscript.pt"
        export_torchscript(model, example, path, metadata)
        with torch.no_grad():
            diff = max_abs_diff(load_torchscript(path)(inputs), expected)
        report |= {"torchscript": str(path), "torchscript_max_abs_diff": diff}
        print(f"TorchScript: {path} (max abs diff vs PyTorch on {len(inputs)} inputs: {diff:.3g})", file=sys.stderr)
        if not diff <= args.tolerance:
            failures.append(f"TorchScript output differs by {diff:.3g} > tolerance {args.tolerance}")

    if want_onnx and not has_onnx:  # format=all asked for both: a missing one is a failure, not a note
        failures.append(f"format=all wrote only {report['torchscript']}: {ONNX_MISSING} (or ask for "
                        "format=torchscript)")
    elif want_onnx:
        import onnx

        path = out_dir / f"{stem}.onnx"
        exporter = export_onnx(model, example, path)
        onnx.checker.check_model(onnx.load(str(path)))
        report |= {"onnx": str(path), "onnx_exporter": exporter}
        if available("onnxruntime"):
            diff = max_abs_diff(run_onnx(path, inputs), expected)
            report["onnx_max_abs_diff"] = diff
            print(f"ONNX: {path} (max abs diff vs PyTorch with onnxruntime: {diff:.3g})", file=sys.stderr)
            if not diff <= args.tolerance:
                failures.append(f"ONNX output differs by {diff:.3g} > tolerance {args.tolerance}")
        else:
            report["onnx_max_abs_diff"] = None
            print(f"ONNX: {path} (passes onnx.checker; outputs not compared: onnxruntime is not installed)",
                  file=sys.stderr)
    if failures:
        raise SystemExit("error: " + "; ".join(failures))
    return report


if __name__ == "__main__":
    run(main)
