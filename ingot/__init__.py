"""ingot: self-hosted model serving behind OpenAI, Azure and Foundry Local APIs."""
