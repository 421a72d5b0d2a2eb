"""`python -m pipeline`: the operator CLI."""

try:
    from pipeline.cli import app
except KeyboardInterrupt:  # Ctrl-C while the CLI loads (pandas, boto3, ...): nothing has started
    raise SystemExit(130) from None

if __name__ == "__main__":
    app(prog_name="python -m pipeline")
