"""Runs in the LiteRT converter's environment (:mod:`eastmir.inference.converter_env`), never in eastmir's: it
imports torch, numpy and ``litert_torch`` only.

``python litert_worker.py PROGRAM.pt2 OUT.tflite [--calibration CLIPS.npz]``: the ``torch.export`` program of a
window model (inputs ``segment``, ``valid``) to a ``.tflite`` file; with ``--calibration`` (arrays ``segment``
``(n, segment_samples)`` and ``valid`` ``(n,)``), static int8: PT2E post-training quantisation with
litert-torch's quantiser (weights per channel, activations per tensor, symmetric) of the operations inside the
module ``--only`` names (the student: the front end's spectrum and logarithm stay float32, as in the ONNX int8
export), its activation ranges observed on those windows one at a time.
"""

import argparse
import sys
import warnings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("program")
    parser.add_argument("out")
    parser.add_argument("--calibration")
    parser.add_argument("--only", default="student")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    import numpy as np
    import torch

    program = torch.export.load(args.program)
    module = program.module()
    example = tuple(program.example_inputs[0]) if program.example_inputs else None
    if example is None:
        sys.exit("the program carries no example inputs")
    import litert_torch

    if args.calibration:
        from litert_torch.quantize import pt2e_quantizer
        from litert_torch.quantize.quant_config import QuantConfig
        from torchao.quantization.pt2e import quantize_pt2e

        class Inside(pt2e_quantizer.PT2EQuantizer):
            """The quantiser's annotations kept on the nodes of one module only (a saved program names its
            modules' types as strings, which the quantiser's own module filters do not match)."""

            def annotate(self, model):
                model = super().annotate(model)
                for node in model.graph.nodes:
                    paths = [path for path, _ in node.meta.get("nn_module_stack", {}).values()]
                    if not any(p == args.only or p.startswith(args.only + ".") for p in paths):
                        node.meta.pop("quantization_annotation", None)
                return model

        quantizer = Inside().set_global(
            pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False)
        )
        module = quantize_pt2e.prepare_pt2e(torch.export.export(module, example).module(), quantizer)
        clips = np.load(args.calibration)
        with torch.no_grad():
            for segment, valid in zip(clips["segment"], clips["valid"]):
                module(torch.from_numpy(segment[None]), torch.from_numpy(valid[None]))
        module = quantize_pt2e.convert_pt2e(module, fold_quantize=False)
        # the converter's STATIC mode folds each quantise / dequantise pair into int8 kernels
        litert_torch.convert(module, example, quant_config=QuantConfig(pt2e_quantizer=quantizer)).export(args.out)
    else:
        litert_torch.convert(module, example).export(args.out)


if __name__ == "__main__":
    main()
