//! Lenient readers for provider JSON. Providers add fields without notice, so
//! unknown fields are ignored, optional metrics default to zero, and money is
//! read from the exact JSON text (number or string), never through f64.

use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use rust_decimal::Decimal;

pub use super::tree::{Json, JsonBody, Number, Object};

/// A parse failure, described so that the adapter can name the account.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct JsonError(pub String);

fn err(msg: impl Into<String>) -> JsonError {
    JsonError(msg.into())
}

/// An exact decimal from a JSON number or numeric string. Null is an error:
/// a money field that reads as 0 when absent hides a bill.
pub fn decimal(value: &Json, field: &str) -> Result<Decimal, JsonError> {
    let text = match value {
        Json::Number(n) => n.to_string(),
        Json::String(s) => s.trim().to_string(),
        Json::Null => return Err(err(format!("field '{field}' is null; a number was expected"))),
        other => return Err(err(format!("field '{field}' should be a number, found {other}"))),
    };
    Decimal::from_str(&text)
        .or_else(|_| Decimal::from_scientific(&text))
        .map_err(|e| err(format!("field '{field}' is not a decimal number ({text}): {e}")))
}

/// An optional quantity: absent or null is 0, anything else as [`decimal`].
pub fn optional_decimal(obj: &Object, field: &str) -> Result<Decimal, JsonError> {
    match obj.get(field) {
        None | Some(Json::Null) => Ok(Decimal::ZERO),
        Some(value) => decimal(value, field),
    }
}

/// An optional integer metric: absent or null is 0; a fraction is an error.
pub fn int_field(obj: &Object, field: &str) -> Result<i64, JsonError> {
    match obj.get(field) {
        None | Some(Json::Null) => Ok(0),
        Some(Json::Number(n)) => n
            .as_i64()
            .ok_or_else(|| err(format!("field '{field}' should be a whole number, found {n}"))),
        Some(Json::String(s)) => s
            .trim()
            .parse::<i64>()
            .map_err(|_| err(format!("field '{field}' should be a whole number, found \"{s}\""))),
        Some(other) => Err(err(format!("field '{field}' should be a whole number, found {other}"))),
    }
}

/// An optional string field: absent or null is "".
pub fn str_field(obj: &Object, field: &str) -> String {
    match obj.get(field) {
        Some(Json::String(s)) => s.to_string(),
        Some(Json::Number(n)) => n.to_string(),
        Some(Json::Bool(b)) => b.to_string(),
        _ => String::new(),
    }
}

pub fn object<'v, 'a>(value: &'v Json<'a>, what: &str) -> Result<&'v Object<'a>, JsonError> {
    value
        .as_object()
        .ok_or_else(|| err(format!("{what} should be a JSON object")))
}

pub fn array<'v, 'a>(obj: &'v Object<'a>, field: &str) -> Result<&'v [Json<'a>], JsonError> {
    match obj.get(field) {
        Some(Json::Array(items)) => Ok(items),
        Some(Json::Null) | None => Err(err(format!("field '{field}' is missing (expected an array)"))),
        Some(other) => Err(err(format!(
            "field '{field}' should be an array, found {}",
            kind(other)
        ))),
    }
}

/// Unix seconds (number or numeric string) as a UTC time.
pub fn unix_seconds(obj: &Object, field: &str) -> Result<DateTime<Utc>, JsonError> {
    let secs = match obj.get(field) {
        Some(Json::Number(n)) => n.as_i64(),
        Some(Json::String(s)) => s.parse::<i64>().ok(),
        _ => None,
    }
    .ok_or_else(|| err(format!("field '{field}' should be Unix seconds")))?;
    Utc.timestamp_opt(secs, 0)
        .single()
        .ok_or_else(|| err(format!("field '{field}' is out of range ({secs})")))
}

/// An RFC 3339 time as UTC.
pub fn rfc3339(obj: &Object, field: &str) -> Result<DateTime<Utc>, JsonError> {
    let text = obj
        .get(field)
        .and_then(Json::as_str)
        .ok_or_else(|| err(format!("field '{field}' should be an RFC 3339 time")))?;
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| err(format!("field '{field}' is not RFC 3339 ({text}): {e}")))
}

/// The pagination cursor: `has_more` + `next_page`. A page that says there is
/// more but gives no cursor is malformed (following it would loop or lose data).
pub fn next_page(obj: &Object) -> Result<Option<String>, JsonError> {
    let has_more = obj.get("has_more").and_then(Json::as_bool).unwrap_or(false);
    if !has_more {
        return Ok(None);
    }
    match obj.get("next_page") {
        Some(Json::String(s)) if !s.is_empty() => Ok(Some(s.to_string())),
        _ => Err(err("has_more is true but next_page is missing")),
    }
}

fn kind(value: &Json) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

/// A fuzz input for a provider's `fuzz_parse`: the first byte picks which of
/// its parsers runs, the rest is the response body; `None` when the body is
/// not JSON (the HTTP layer refuses those before any parser sees them).
pub fn fuzz_input(data: &[u8]) -> Option<(u8, Json<'_>)> {
    let (&which, body) = data.split_first()?;
    Json::parse(body).ok().map(|value| (which, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_keeps_every_digit_of_a_json_number() {
        let v = Json::parse(br#"{"value": 0.8958740000000000123}"#).unwrap();
        let d = decimal(v.get("value").unwrap(), "value").unwrap();
        assert_eq!(d.to_string(), "0.8958740000000000123");
        let s = Json::parse(br#""41280.000000""#).unwrap();
        assert_eq!(decimal(&s, "amount").unwrap(), Decimal::from_str("41280").unwrap());
        let e = Json::parse(b"1e-3").unwrap();
        assert_eq!(decimal(&e, "x").unwrap(), Decimal::from_str("0.001").unwrap());
        assert!(decimal(&Json::Bool(true), "x").is_err());
        assert!(decimal(&Json::Null, "amount")
            .unwrap_err()
            .0
            .contains("'amount' is null"));
        let o = Json::parse(br#"{"q": null, "r": "2.5"}"#).unwrap();
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
        let v = Json::parse(br#"{"a": 3, "b": null, "c": 1.5, "d": "7"}"#).unwrap();
        let o = v.as_object().unwrap();
        assert_eq!(int_field(o, "a").unwrap(), 3);
        assert_eq!(int_field(o, "b").unwrap(), 0);
        assert_eq!(int_field(o, "missing").unwrap(), 0);
        assert_eq!(int_field(o, "d").unwrap(), 7);
        assert!(int_field(o, "c").unwrap_err().0.contains("'c'"));
    }

    #[test]
    fn has_more_without_cursor_is_an_error() {
        let v = Json::parse(br#"{"has_more": true, "next_page": null}"#).unwrap();
        assert!(next_page(v.as_object().unwrap()).is_err());
        let v = Json::parse(br#"{"has_more": false, "next_page": null}"#).unwrap();
        assert_eq!(next_page(v.as_object().unwrap()).unwrap(), None);
    }
}
