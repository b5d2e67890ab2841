"""Model and frame options shared by the benchmark scripts (same names, same defaults)."""
import argparse


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--backend/--model/--pretrained/--device/--precision/--short-side/--width/--height."""
    parser.add_argument("--backend", default="dense_clip")
    parser.add_argument("--model", default="ViT-B-16")
    parser.add_argument("--pretrained", default="random")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--short-side", type=int, default=448)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)


def add_setting_arguments(parser: argparse.ArgumentParser) -> None:
    """--compile/--runtime/--onnx-model and --set FIELD=VALUE (any config field, repeatable)."""
    parser.add_argument("--compile", default="none", help="none | torch | cuda_graphs")
    parser.add_argument("--runtime", default="torch", help="torch | onnxruntime (with --onnx-model)")
    parser.add_argument("--onnx-model", default="", help="the .onnx file lseg-export wrote")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="any config field, e.g. --set mha_fastpath=on --set confidence_dtype=float16")


def setting_overrides(args: argparse.Namespace) -> dict:
    """{dotted field: value} from --compile/--runtime/--onnx-model/--set."""
    overrides = {"compile": args.compile, "runtime": args.runtime}
    if args.onnx_model:
        overrides["onnx_model"] = args.onnx_model
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set {item!r}: expected FIELD=VALUE")
        overrides[name.strip()] = value.strip()
    return overrides
