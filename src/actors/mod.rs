//! The actors: a supervisor that owns one connection actor per account, and
//! the writer that is the only component inserting into ClickHouse.

pub mod connection;
pub mod supervisor;
pub mod writer;
