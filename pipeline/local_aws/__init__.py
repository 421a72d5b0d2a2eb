"""Local stand-ins for AWS services: Feature Store, the model registry, Batch Transform's request cutting."""
