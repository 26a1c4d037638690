//! Integration tests against a real ClickHouse server (started by
//! `scripts/test.sh`) and the bundled provider simulator over real HTTP.

mod support;

mod actors;
mod admin;
mod client;
mod connection_test;
mod crash;
mod daemon;
mod dashboards;
mod failures;
mod hostile;
mod logs;
mod migrations;
mod normalize;
mod prometheus;
mod providers_aws_bedrock;
mod providers_gateway;
mod providers_media;
mod proxy;
mod sync_e2e;
mod vault;
mod verify;
mod writer;
