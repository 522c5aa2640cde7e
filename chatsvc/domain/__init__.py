"""Pure domain rules: no I/O, no framework imports (tests/test_purity.py enforces it)."""
