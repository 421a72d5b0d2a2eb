"""Local runner and operator CLI for the churn pipeline; they drive the shared steps, never re-implement them."""
