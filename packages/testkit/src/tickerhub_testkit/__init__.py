"""Test helpers shared by every package's tests (never imported by the services)."""
