"""The tokenizer service: chat templates, encoding and decoding for every cached model, without weights."""
