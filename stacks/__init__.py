"""The CDK constructs of the churn pipeline and the one stack that wires them (churn_stack.py)."""
