"""Test support shared across tests/ folders (moto patches, fake AWS environments)."""
