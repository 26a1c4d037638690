//! Everything that talks to ClickHouse: the client, migrations, the stored
//! state of a sync's scope, run bookkeeping, and the pure diff.

pub mod client;
pub mod diff;
pub mod migrations;
pub mod native;
pub mod scope_reads;
pub mod sink;
pub mod state;
pub mod status;
pub mod verify;

pub use client::{ClickhouseClient, StoreError};
