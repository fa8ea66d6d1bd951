"""Benchmarks behind ``facegate bench``: each module returns rows; the command prints them."""
