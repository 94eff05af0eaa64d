"""Authentication, permissions and rate limits."""
