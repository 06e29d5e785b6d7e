"""The tools around the product: the command line, the clickstream simulator, the local stack."""
