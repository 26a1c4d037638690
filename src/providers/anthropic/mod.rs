//! Anthropic Admin API adapter.
