"""``python -m inferencekey``: the same command line as ``inferencekey``."""

from inferencekey.cli import run

if __name__ == "__main__":
    run()
