//! Provider simulator: serves OpenAI and Anthropic admin API formats with seeded data.
