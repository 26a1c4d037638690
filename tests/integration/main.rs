//! Integration tests against a real ClickHouse server (started by
//! `scripts/test.sh`) and the bundled provider simulator over real HTTP.

mod support;

mod actors;
mod client;
mod daemon;
mod failures;
mod migrations;
mod normalize;
mod proxy;
mod sync_e2e;
mod verify;
mod writer;
