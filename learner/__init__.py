"""Turning the clickstream into training examples and River models."""
