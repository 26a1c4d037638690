//! Integration tests against a real ClickHouse server (started by
//! `scripts/test.sh`) and the bundled provider simulator over real HTTP.

mod support;

mod actors;
mod daemon;
mod failures;
mod migrations;
mod normalize;
mod proxy;
mod sync_e2e;
mod vault;
mod verify;
mod writer;
