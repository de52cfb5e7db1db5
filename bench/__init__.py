"""The benchmark suite: the real service over HTTP against raw asyncpg running the very statements the
service sends, in the same run (bench/README.md)."""
