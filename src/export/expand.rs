//! Expanding a dashboard panel's SQL the way Grafana and the ClickHouse data
//! source plugin do: template variables (`$var`, `${var}`, `${var:format}`),
//! then the plugin's time macros. Only what the exported panels use is known;
//! anything else is an error, so a dashboard edit that uses something new
//! fails the export (and its test) instead of being exported half-expanded.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

/// Values of template variables (a multi-value variable has several).
pub type Vars = BTreeMap<String, Vec<String>>;

/// The expanded SQL, or what could not be expanded.
pub fn expand(sql: &str, from: DateTime<Utc>, to: DateTime<Utc>, vars: &Vars) -> Result<String, String> {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or("an unclosed ${ in the panel SQL")?;
            let (name, format) = match body[..end].split_once(':') {
                Some((name, format)) => (name, Some(format)),
                None => (&body[..end], None),
            };
            out.push_str(&variable(name, format, vars)?);
            rest = &body[end + 1..];
            continue;
        }
        let name_len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        let name = &after[..name_len];
        match name {
            "" => out.push('$'),
            "__fromTime" => out.push_str(&format!("toDateTime({})", from.timestamp())),
            "__toTime" => out.push_str(&format!("toDateTime({})", to.timestamp())),
            macro_name if macro_name.starts_with("__") => {
                return Err(format!("the export does not know the macro ${macro_name}"))
            }
            _ => out.push_str(&variable(name, None, vars)?),
        }
        rest = &after[name_len..];
    }
    out.push_str(rest);
    Ok(out)
}

fn variable(name: &str, format: Option<&str>, vars: &Vars) -> Result<String, String> {
    let values = vars
        .get(name)
        .ok_or_else(|| format!("the export does not know the template variable ${name}"))?;
    match format {
        None | Some("raw") => Ok(values.join(",")),
        // Grafana's singlequote: each value in '...', with \ and ' escaped.
        Some("singlequote") => Ok(values
            .iter()
            .map(|v| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'")))
            .collect::<Vec<_>>()
            .join(",")),
        Some(other) => Err(format!(
            "the export does not know the variable format ${{{name}:{other}}}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn variables_and_macros_expand_and_unknown_ones_fail() {
        let vars: Vars = [
            ("database".to_string(), vec!["tt".to_string()]),
            ("provider".to_string(), vec!["openai".to_string(), "o'x".to_string()]),
            ("search".to_string(), vec![String::new()]),
        ]
        .into();
        let from = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let to = Utc.with_ymd_and_hms(2026, 1, 7, 23, 59, 59).unwrap();
        let sql = "SELECT 1 FROM ${database}.t WHERE p IN (${provider:singlequote}) AND ${search:singlequote} = '' \
                   AND d >= $__fromTime AND d <= $__toTime AND x = $database";
        assert_eq!(
            expand(sql, from, to, &vars).unwrap(),
            "SELECT 1 FROM tt.t WHERE p IN ('openai','o\\'x') AND '' = '' AND d >= toDateTime(1767225600) \
             AND d <= toDateTime(1767830399) AND x = tt"
        );
        assert!(expand("$__timeFilter(x)", from, to, &vars)
            .unwrap_err()
            .contains("$__timeFilter"));
        assert!(expand("${nope}", from, to, &vars).unwrap_err().contains("$nope"));
        assert!(expand("${database:regex}", from, to, &vars)
            .unwrap_err()
            .contains("regex"));
    }
}
