"""``python -m unet.export ckpt_path=<ckpt> format=bioimageio|onnx|torchscript output=<path>``."""

from unet.export.cli import main

if __name__ == "__main__":
    main()
