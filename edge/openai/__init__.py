"""The OpenAI API surface: chat, completions, embeddings, models and tokens, with their schemas."""
