"""The reliability suite: hangs, truncation, retries, leaks, signals and fork (see
RELIABILITY.md at the repository root, which links every guarantee to its test)."""
