"""The engine: runs a test plan (registrations, calls, media) and reports its metrics."""
