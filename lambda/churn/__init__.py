"""Churn pipeline runtime code shared by the Lambda functions, the local mode and the CLI."""
