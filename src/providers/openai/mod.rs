//! OpenAI Admin API adapter.
