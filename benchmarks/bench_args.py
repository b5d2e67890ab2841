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
