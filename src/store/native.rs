//! ClickHouse's Native format, for the writer's `usage_records` INSERTs.
//!
//! The rest of the client speaks RowBinary, which the server parses row by
//! row and value by value. Native arrives column by column and 18.16 takes
//! each column whole: for the same 954,364 rows the server spent 1.40-1.43
//! CPU s on a Native insert against 1.80-2.08 s on RowBinary, and in 20
//! inserts of ~48,000 rows 2.65-2.87 s against 3.03-3.33 s (three runs each,
//! 2 cores). In a first sync that is CPU the daemon, the provider and
//! ClickHouse share.
//!
//! A block is the number of columns and of rows (varuints), then per column
//! its name, its type exactly as the table declares it, and its values one
//! after another: integers little-endian, `DateTime` as `UInt32`,
//! `Decimal(38, 9)` as the 16-byte `Int128` it stores, `String` as a varuint
//! length and the bytes. The server squashes one INSERT's blocks into parts
//! of up to `min_insert_block_size_rows` rows, so the size of a block bounds
//! only this side's buffer.

use crate::normalize::schema::{Dec9, Text, UsageRow};

/// Rows per Native block: ~1.1 MB encoded.
pub const BLOCK_ROWS: usize = 4096;

/// One column of a block: its name and its ClickHouse type.
pub struct Column {
    pub name: &'static str,
    pub kind: &'static str,
}

/// A value as Native lays it out in its column.
trait NativeValue {
    fn put(&self, out: &mut Vec<u8>);
}

impl NativeValue for Text {
    fn put(&self, out: &mut Vec<u8>) {
        put_str(self, out);
    }
}

macro_rules! little_endian {
    ($($ty:ty),*) => {$(
        impl NativeValue for $ty {
            fn put(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    )*};
}
little_endian!(u32, u64, i64, i8);

impl NativeValue for Dec9 {
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0.to_le_bytes());
    }
}

fn put_varuint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_str(text: &str, out: &mut Vec<u8>) {
    put_varuint(text.len() as u64, out);
    out.extend_from_slice(text.as_bytes());
}

/// Declares the columns (name, type) and the function that appends one row's
/// values, each to its column's buffer, from one list.
macro_rules! columns {
    ($($field:ident: $kind:literal),* $(,)?) => {
        /// `usage_records` column by column, in table order, with the types
        /// the migrations give them (an integration test compares both with
        /// the table).
        pub const USAGE_COLUMNS: &[Column] = &[$(Column { name: stringify!($field), kind: $kind }),*];

        fn put_row(row: &UsageRow, buffers: &mut [Vec<u8>]) {
            let mut buffers = buffers.iter_mut();
            $(row.$field.put(buffers.next().expect("a buffer per column"));)*
        }
    };
}

columns! {
    connection_id: "String",
    provider: "String",
    record_type: "String",
    endpoint: "String",
    bucket_start: "DateTime('UTC')",
    bucket_end: "DateTime('UTC')",
    granularity: "String",
    record_key: "UInt64",
    model: "String",
    model_raw: "String",
    model_family: "String",
    service: "String",
    workspace_id: "String",
    project_id: "String",
    api_key_id: "String",
    api_key_hint: "String",
    user_id: "String",
    region: "String",
    resource_id: "String",
    line_item: "String",
    attributes: "String",
    input_tokens: "Int64",
    output_tokens: "Int64",
    cached_input_tokens: "Int64",
    cache_creation_tokens: "Int64",
    requests: "Int64",
    requests_reported: "Int8",
    quantity: "Decimal(38, 9)",
    unit: "String",
    cost: "Decimal(38, 9)",
    estimated_cost: "Decimal(38, 9)",
    credits: "Decimal(38, 9)",
    cost_source: "String",
    currency: "String",
    amount_original: "Decimal(38, 9)",
    sign: "Int8",
    version: "UInt64",
    synced_at: "DateTime('UTC')",
    content_hash: "UInt64",
}

/// Encodes blocks of `usage_records` rows, keeping its column buffers
/// between blocks.
///
/// Rows are read one after the other, each value appended to its column's
/// buffer, and the buffers then copied out in column order. Writing the block
/// column by column instead read every row once per column: the rows (~700
/// bytes each, made long before on another thread) came from memory 39 times,
/// and the encoding took twice the CPU of the RowBinary it replaced.
#[derive(Default)]
pub struct UsageBlocks {
    buffers: Vec<Vec<u8>>,
}

impl UsageBlocks {
    /// Appends one block of `rows` to `out`.
    pub fn encode(&mut self, rows: &[&UsageRow], out: &mut Vec<u8>) {
        self.buffers.resize_with(USAGE_COLUMNS.len(), Vec::new);
        for row in rows {
            put_row(row, &mut self.buffers);
        }
        put_varuint(USAGE_COLUMNS.len() as u64, out);
        put_varuint(rows.len() as u64, out);
        for (column, buffer) in USAGE_COLUMNS.iter().zip(&mut self.buffers) {
            put_str(column.name, out);
            put_str(column.kind, out);
            out.extend_from_slice(buffer);
            buffer.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_columns_are_the_rows_fields_in_table_order() {
        let names: Vec<&str> = USAGE_COLUMNS.iter().map(|c| c.name).collect();
        assert_eq!(names, UsageRow::COLUMNS);
    }

    #[test]
    fn varuints_are_little_endian_base_128() {
        for (value, bytes) in [
            (0u64, vec![0u8]),
            (127, vec![0x7f]),
            (128, vec![0x80, 0x01]),
            (300, vec![0xac, 0x02]),
            (
                u64::MAX,
                vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
        ] {
            let mut out = Vec::new();
            put_varuint(value, &mut out);
            assert_eq!(out, bytes, "{value}");
        }
    }

    #[test]
    fn a_block_is_counts_then_each_column_named_typed_and_filled() {
        let row = |unit: &str, cost: i128, sign: i8| UsageRow {
            unit: unit.into(),
            cost: Dec9(cost),
            sign,
            bucket_start: 0x0102_0304,
            ..UsageRow::default()
        };
        let (a, b) = (row("tokens", -5, -1), row(&"x".repeat(200), 1, 1));
        let mut out = Vec::new();
        UsageBlocks::default().encode(&[&a, &b], &mut out);

        assert_eq!(&out[..2], &[39, 2], "39 columns, 2 rows");
        let header = |name: &str, kind: &str| {
            let mut bytes = Vec::new();
            put_str(name, &mut bytes);
            put_str(kind, &mut bytes);
            bytes
        };
        let find = |needle: &[u8]| {
            out.windows(needle.len())
                .position(|w| w == needle)
                .map(|at| at + needle.len())
                .unwrap_or_else(|| panic!("{needle:?} not in the block"))
        };
        let at = find(&header("bucket_start", "DateTime('UTC')"));
        assert_eq!(&out[at..at + 8], &[4, 3, 2, 1, 4, 3, 2, 1]);
        let at = find(&header("unit", "String"));
        assert_eq!(&out[at..at + 7], b"\x06tokens");
        assert_eq!(
            &out[at + 7..at + 9],
            &[0xc8, 0x01],
            "a 200-byte string's length takes two bytes"
        );
        let at = find(&header("cost", "Decimal(38, 9)"));
        assert_eq!(&out[at..at + 16], &(-5i128).to_le_bytes());
        assert_eq!(&out[at + 16..at + 32], &1i128.to_le_bytes());
        let at = find(&header("sign", "Int8"));
        assert_eq!(&out[at..at + 2], &[0xff, 0x01]);
    }
}
