//! Integration tests against a real ClickHouse server (started by
//! `scripts/test.sh`) and the bundled provider simulator over real HTTP.

mod support;

mod actors;
mod admin;
mod allocation;
mod client;
mod connection_test;
mod crash;
mod daemon;
mod dashboards;
mod export;
mod failures;
mod fault_mix;
mod first_sync;
mod hostile;
mod logs;
mod migrations;
mod names;
mod normalize;
mod prometheus;
mod providers_aws_bedrock;
mod providers_azure;
mod providers_gateway;
mod providers_google_vertex;
mod providers_media;
mod proxy;
mod reload;
mod sync_e2e;
mod vault;
mod verify;
mod webhooks;
mod writer;
