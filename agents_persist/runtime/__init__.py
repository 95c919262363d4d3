"""Process-level machinery shared by every backend: fork handling, connection pools, locks, deadlines."""
