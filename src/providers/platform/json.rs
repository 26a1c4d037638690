//! Lenient readers for provider JSON. Providers add fields without notice, so
//! unknown fields are ignored, optional metrics default to zero, and money is
//! read from the exact JSON text (number or string), never through f64.

use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use rust_decimal::Decimal;
use serde_json::Value;

/// A parse failure, described so that the adapter can name the account.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct JsonError(pub String);

fn err(msg: impl Into<String>) -> JsonError {
    JsonError(msg.into())
}

/// An exact decimal from a JSON number or numeric string. Null is an error:
/// a money field that reads as 0 when absent hides a bill.
pub fn decimal(value: &Value, field: &str) -> Result<Decimal, JsonError> {
    let text = match value {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_string(),
        Value::Null => return Err(err(format!("field '{field}' is null; a number was expected"))),
        other => return Err(err(format!("field '{field}' should be a number, found {other}"))),
    };
    Decimal::from_str(&text)
        .or_else(|_| Decimal::from_scientific(&text))
        .map_err(|e| err(format!("field '{field}' is not a decimal number ({text}): {e}")))
}

/// An optional quantity: absent or null is 0, anything else as [`decimal`].
pub fn optional_decimal(obj: &serde_json::Map<String, Value>, field: &str) -> Result<Decimal, JsonError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(Decimal::ZERO),
        Some(value) => decimal(value, field),
    }
}

/// An optional integer metric: absent or null is 0; a fraction is an error.
pub fn int_field(obj: &serde_json::Map<String, Value>, field: &str) -> Result<i64, JsonError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(0),
        Some(Value::Number(n)) => n
            .as_i64()
            .ok_or_else(|| err(format!("field '{field}' should be a whole number, found {n}"))),
        Some(Value::String(s)) => s
            .trim()
            .parse::<i64>()
            .map_err(|_| err(format!("field '{field}' should be a whole number, found \"{s}\""))),
        Some(other) => Err(err(format!("field '{field}' should be a whole number, found {other}"))),
    }
}

/// An optional string field: absent or null is "".
pub fn str_field(obj: &serde_json::Map<String, Value>, field: &str) -> String {
    match obj.get(field) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => String::new(),
    }
}

pub fn object<'a>(value: &'a Value, what: &str) -> Result<&'a serde_json::Map<String, Value>, JsonError> {
    value
        .as_object()
        .ok_or_else(|| err(format!("{what} should be a JSON object")))
}

pub fn array<'a>(obj: &'a serde_json::Map<String, Value>, field: &str) -> Result<&'a Vec<Value>, JsonError> {
    match obj.get(field) {
        Some(Value::Array(items)) => Ok(items),
        Some(Value::Null) | None => Err(err(format!("field '{field}' is missing (expected an array)"))),
        Some(other) => Err(err(format!(
            "field '{field}' should be an array, found {}",
            kind(other)
        ))),
    }
}

/// Unix seconds (number or numeric string) as a UTC time.
pub fn unix_seconds(obj: &serde_json::Map<String, Value>, field: &str) -> Result<DateTime<Utc>, JsonError> {
    let secs = match obj.get(field) {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.parse::<i64>().ok(),
        _ => None,
    }
    .ok_or_else(|| err(format!("field '{field}' should be Unix seconds")))?;
    Utc.timestamp_opt(secs, 0)
        .single()
        .ok_or_else(|| err(format!("field '{field}' is out of range ({secs})")))
}

/// An RFC 3339 time as UTC.
pub fn rfc3339(obj: &serde_json::Map<String, Value>, field: &str) -> Result<DateTime<Utc>, JsonError> {
    let text = obj
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| err(format!("field '{field}' should be an RFC 3339 time")))?;
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| err(format!("field '{field}' is not RFC 3339 ({text}): {e}")))
}

/// The pagination cursor: `has_more` + `next_page`. A page that says there is
/// more but gives no cursor is malformed (following it would loop or lose data).
pub fn next_page(obj: &serde_json::Map<String, Value>) -> Result<Option<String>, JsonError> {
    let has_more = obj.get("has_more").and_then(Value::as_bool).unwrap_or(false);
    if !has_more {
        return Ok(None);
    }
    match obj.get("next_page") {
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        _ => Err(err("has_more is true but next_page is missing")),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A fuzz input for a provider's `fuzz_parse`: the first byte picks which of
/// its parsers runs, the rest is the response body; `None` when the body is
/// not JSON (the HTTP layer refuses those before any parser sees them).
pub fn fuzz_input(data: &[u8]) -> Option<(u8, Value)> {
    let (&which, body) = data.split_first()?;
    serde_json::from_slice(body).ok().map(|value| (which, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_keeps_every_digit_of_a_json_number() {
        let v: Value = serde_json::from_str(r#"{"value": 0.8958740000000000123}"#).unwrap();
        let d = decimal(&v["value"], "value").unwrap();
        assert_eq!(d.to_string(), "0.8958740000000000123");
        let s: Value = serde_json::from_str(r#""41280.000000""#).unwrap();
        assert_eq!(decimal(&s, "amount").unwrap(), Decimal::from_str("41280").unwrap());
        let e: Value = serde_json::from_str("1e-3").unwrap();
        assert_eq!(decimal(&e, "x").unwrap(), Decimal::from_str("0.001").unwrap());
        assert!(decimal(&Value::Bool(true), "x").is_err());
        assert!(decimal(&Value::Null, "amount")
            .unwrap_err()
            .0
            .contains("'amount' is null"));
        let o: Value = serde_json::from_str(r#"{"q": null, "r": "2.5"}"#).unwrap();
        assert_eq!(optional_decimal(o.as_object().unwrap(), "q").unwrap(), Decimal::ZERO);
        assert_eq!(
            optional_decimal(o.as_object().unwrap(), "missing").unwrap(),
            Decimal::ZERO
        );
        assert_eq!(
            optional_decimal(o.as_object().unwrap(), "r").unwrap(),
            Decimal::from_str("2.5").unwrap()
        );
    }

    #[test]
    fn int_fields_are_lenient_about_absence_but_not_fractions() {
        let v: Value = serde_json::from_str(r#"{"a": 3, "b": null, "c": 1.5, "d": "7"}"#).unwrap();
        let o = v.as_object().unwrap();
        assert_eq!(int_field(o, "a").unwrap(), 3);
        assert_eq!(int_field(o, "b").unwrap(), 0);
        assert_eq!(int_field(o, "missing").unwrap(), 0);
        assert_eq!(int_field(o, "d").unwrap(), 7);
        assert!(int_field(o, "c").unwrap_err().0.contains("'c'"));
    }

    #[test]
    fn has_more_without_cursor_is_an_error() {
        let v: Value = serde_json::from_str(r#"{"has_more": true, "next_page": null}"#).unwrap();
        assert!(next_page(v.as_object().unwrap()).is_err());
        let v: Value = serde_json::from_str(r#"{"has_more": false, "next_page": null}"#).unwrap();
        assert_eq!(next_page(v.as_object().unwrap()).unwrap(), None);
    }
}
