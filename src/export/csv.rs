//! ClickHouse `TabSeparatedWithNamesAndTypes` in, RFC 4180 CSV out.
//!
//! Values are passed through as ClickHouse prints them: a `Decimal(38, 9)` is
//! its exact decimal text (never through a float), a `Date` is `YYYY-MM-DD`.
//! `NULL` becomes an empty field.

/// A query's answer as text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    pub columns: Vec<String>,
    /// ClickHouse type names, e.g. `Decimal(38, 9)`, `Nullable(Float64)`.
    pub types: Vec<String>,
    /// `None` is NULL.
    pub rows: Vec<Vec<Option<String>>>,
}

impl Table {
    /// Reads `TabSeparatedWithNamesAndTypes`.
    pub fn from_tsv(text: &str) -> Result<Self, String> {
        let mut lines = text.split('\n').filter(|l| !l.is_empty());
        let columns: Vec<String> = lines
            .next()
            .ok_or("the answer has no header")?
            .split('\t')
            .map(|c| unescape(c).unwrap_or_default())
            .collect();
        let types: Vec<String> = lines
            .next()
            .ok_or("the answer has no types line")?
            .split('\t')
            .map(|c| unescape(c).unwrap_or_default())
            .collect();
        if types.len() != columns.len() {
            return Err("the answer's header and types differ in length".into());
        }
        let mut rows = Vec::new();
        for line in lines {
            let row: Vec<Option<String>> = line.split('\t').map(unescape).collect();
            if row.len() != columns.len() {
                return Err(format!("a row has {} fields, the header {}", row.len(), columns.len()));
            }
            rows.push(row);
        }
        Ok(Self { columns, types, rows })
    }

    /// RFC 4180: a header line, CRLF line ends, fields quoted when they hold
    /// a comma, a quote, CR or LF (quotes doubled).
    pub fn to_csv(&self) -> String {
        let mut out = String::new();
        let mut line = |fields: &mut dyn Iterator<Item = &str>| {
            let quoted: Vec<String> = fields.map(field).collect();
            out.push_str(&quoted.join(","));
            out.push_str("\r\n");
        };
        line(&mut self.columns.iter().map(String::as_str));
        for row in &self.rows {
            line(&mut row.iter().map(|v| v.as_deref().unwrap_or("")));
        }
        out
    }
}

fn field(value: &str) -> String {
    if value.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

/// One TabSeparated field; `\N` alone is NULL.
fn unescape(raw: &str) -> Option<String> {
    if raw == "\\N" {
        return None;
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('0') => out.push('\0'),
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsv_to_rfc4180() {
        let tsv = "provider\tkey\tnet_usd\tratio\nString\tString\tDecimal(38, 9)\tNullable(Float64)\n\
                   openai\ta,b \"q\"\t12.300000000\t\\N\nanthropic\tline\\nbreak\\ttab\t-0.000000001\t0.5\n";
        let table = Table::from_tsv(tsv).unwrap();
        assert_eq!(table.types[2], "Decimal(38, 9)");
        assert_eq!(table.rows[0][3], None);
        assert_eq!(
            table.to_csv(),
            "provider,key,net_usd,ratio\r\nopenai,\"a,b \"\"q\"\"\",12.300000000,\r\n\
             anthropic,\"line\nbreak\ttab\",-0.000000001,0.5\r\n"
        );
        assert!(Table::from_tsv("a\tb\nString\n").is_err());
        assert!(Table::from_tsv("a\nString\nx\ty\n").is_err());
    }
}
