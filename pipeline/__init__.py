"""The operator CLI, the local runner and local AWS stand-ins; the steps' logic is churn's (fast_validate aside)."""
