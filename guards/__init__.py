"""Drift alerts, fraud and poisoning quarantine, rollback decisions."""
