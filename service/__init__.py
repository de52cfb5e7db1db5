"""Strengths & Goals API."""
