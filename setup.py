"""pip installation of the lseg_ros Python package (the ROS build uses CMakeLists.txt)."""
from setuptools import find_packages, setup

setup(
    name="lseg_ros",
    version="0.1.0",
    description="Language-driven open-vocabulary semantic segmentation for ROS 2 (LSeg, dense CLIP)",
    license="Apache-2.0",
    python_requires=">=3.10",
    # package_dir makes editable installs put the repository on sys.path (not an import hook),
    # so the generated lseg_ros.msg installed beside the venv merges with the sources.
    package_dir={"": "."},
    packages=find_packages(include=["lseg_ros", "lseg_ros.*"]),
    package_data={
        "lseg_ros": [
            "model_configs/*.json",
            "prompt_banks/*.json",
            "data/class_names/*.txt",
            "data/class_names/*/*.txt",
            "data/class_names/*/*.md",
            "weights/*.safetensors",
            "weights/*.yaml",
        ],
    },
    install_requires=[
        # Users bring their own torch build (Jetson, CUDA desktop); dev/CI pins it in requirements/dev.txt.
        # 2.3: the oldest-deps lane's floor (requirements/oldest.txt); 2.1-2.2 lack
        # torch.backends.mha.set_fastpath_enabled (ONNX export) and torch.amp.GradScaler. JetPack 6: 2.3+.
        "torch>=2.3",
        # open_clip imports it and timm needs it; on a Jetson the build matching JetPack's torch
        # (docs/install.md), since PyPI's pulls a PyPI torch over JetPack's.
        "torchvision>=0.18",
        # 2.26.1: the first with batch-first transformers (dense_clip's blocks, trimmed text encoding)
        "open_clip_torch>=2.26.1",
        # 0.9.6: the first with dynamic_img_size (ViL-Seg's ViT at any input size)
        "timm>=0.9.6",
        "numpy>=1.22",
        "pillow>=9",
        # 6.0: 5.4 has no Python 3.10 wheels and its sdist no longer builds (Cython 3)
        "pyyaml>=6.0",
        "safetensors>=0.4",
        "tqdm>=4.60",
        "scipy>=1.7",
    ],
    extras_require={"eval": ["matplotlib>=3.5"], "onnx": ["onnx>=1.16", "onnxruntime>=1.18"]},
    entry_points={
        "console_scripts": [
            "lseg-segment = lseg_ros.cli:main",
            "lseg-train = lseg_ros.train:main",
            "lseg-eval = lseg_ros.evaluate:main",
            "lseg-export = lseg_ros.export:main",
        ],
    },
)
