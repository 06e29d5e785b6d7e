"""Signed, atomic snapshots of the learner's state, and restoring them."""
