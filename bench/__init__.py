"""ingot's benchmarks, each measured against the raw engine in the same run (`make bench`)."""
