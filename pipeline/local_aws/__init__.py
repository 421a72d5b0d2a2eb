"""Local stand-ins for AWS services: Feature Store, the model registry, a training job, a Batch Transform job."""
