"""Signed webhooks from a transactional outbox (Standard Webhooks), delivered at least once."""
