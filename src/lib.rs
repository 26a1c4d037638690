//! tokentra-sync: AI provider usage and cost, exactly once, in ClickHouse.
//!
//! Map of the crate (data flows top to bottom):
//!
//! - [`config`]: TOML + env, validated purely into [`config::ValidatedConfig`].
//! - [`provider`]: which provider a thing belongs to (a leaf every layer uses).
//! - [`providers`]: one folder per provider behind [`providers::ProviderAdapter`],
//!   listed in [`providers::registry`], sharing [`providers::platform`].
//! - [`normalize`]: the common schema, record identity, model names, prices.
//! - [`allocate`]: bills shared out to keys and models (per-key cost).
//! - [`store`]: ClickHouse client, migrations, stored-state reads and the diff.
//! - [`sync`]: one sync of one account: fetch -> normalize -> diff -> write.
//! - [`actors`]: supervisor, one connection actor per account, the writer.
//! - [`daemon`]: the `run` lifecycle around them (start, signals, graceful stop).
//! - [`reload`]: SIGHUP / `POST /v1/reload`: re-read, validate, reconcile.
//! - [`webhooks`]: signed `sync.completed` / `sync.failed` events.
//! - [`admin`], [`metrics`]: health and Prometheus.
//! - [`export`]: dashboard tables as CSV (the dashboards' own SQL).
//! - [`cli`]: the command line.
//!
//! Errors: every library module returns a typed `thiserror` error whose message
//! names the account and field involved; `anyhow` appears only in `main.rs`.

pub mod actors;
pub mod admin;
pub mod allocate;
pub mod app;
pub mod cli;
pub mod config;
pub mod connection_test;
pub mod daemon;
pub mod export;
pub mod lock;
pub mod metrics;
pub mod names;
pub mod normalize;
pub mod provider;
pub mod providers;
pub mod reload;
pub mod shutdown;
pub mod simulator;
pub mod store;
pub mod sync;
pub mod vault;
pub mod webhooks;
