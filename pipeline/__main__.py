"""`python -m pipeline`: the operator CLI."""

from pipeline.cli import app

if __name__ == "__main__":
    app(prog_name="python -m pipeline")
