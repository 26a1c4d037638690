//! CBOR <-> JSON for CloudWatch's Smithy RPC v2 CBOR protocol, whose shapes
//! are the awsJson 1.0 shapes with CBOR encoding: timestamps are tag 1
//! (epoch seconds) instead of JSON numbers, doubles are CBOR floats. The
//! simulator reads CloudWatch requests with it and writes its answers; the
//! moto bridge of the integration tests translates with it (moto speaks
//! JSON 1.0 for CloudWatch, not CBOR).

use minicbor::data::{Tag, Type};
use serde_json::{Map, Number, Value};

/// Fields whose values are timestamps (tag 1), in requests or answers.
const TIMESTAMP_FIELDS: &[&str] = &[
    "StartTime",
    "EndTime",
    "Timestamp",
    "Timestamps",
    "StateUpdatedTimestamp",
];

/// Fields whose numbers are doubles even when whole.
const DOUBLE_FIELDS: &[&str] = &["Values", "Value", "Sum", "Average", "Minimum", "Maximum", "SampleCount"];

/// One CBOR value (a request or answer body) as JSON: tag 1 becomes its
/// epoch seconds, byte strings become arrays of numbers.
pub fn to_json(bytes: &[u8]) -> Result<Value, String> {
    let mut decoder = minicbor::Decoder::new(bytes);
    let value = read(&mut decoder, 0)?;
    if decoder.position() != bytes.len() {
        return Err(format!(
            "{} bytes after the CBOR value",
            bytes.len() - decoder.position()
        ));
    }
    Ok(value)
}

fn read(d: &mut minicbor::Decoder<'_>, depth: usize) -> Result<Value, String> {
    if depth > 64 {
        return Err("CBOR nested deeper than 64 levels".into());
    }
    let err = |e: minicbor::decode::Error| e.to_string();
    Ok(match d.datatype().map_err(err)? {
        Type::Bool => Value::Bool(d.bool().map_err(err)?),
        Type::Null | Type::Undefined => {
            d.skip().map_err(err)?;
            Value::Null
        }
        Type::U8 | Type::U16 | Type::U32 | Type::U64 => Value::from(d.u64().map_err(err)?),
        Type::I8 | Type::I16 | Type::I32 | Type::I64 => Value::from(d.i64().map_err(err)?),
        Type::F16 | Type::F32 => float(d.f32().map_err(err)? as f64),
        Type::F64 => float(d.f64().map_err(err)?),
        Type::String => Value::String(d.str().map_err(err)?.to_string()),
        Type::Bytes => Value::Array(d.bytes().map_err(err)?.iter().map(|b| Value::from(*b)).collect()),
        Type::Array | Type::ArrayIndef => {
            let len = d.array().map_err(err)?;
            let mut out = Vec::new();
            match len {
                Some(n) => {
                    for _ in 0..n {
                        out.push(read(d, depth + 1)?);
                    }
                }
                None => {
                    while d.datatype().map_err(err)? != Type::Break {
                        out.push(read(d, depth + 1)?);
                    }
                    d.skip().map_err(err)?;
                }
            }
            Value::Array(out)
        }
        Type::Map | Type::MapIndef => {
            let len = d.map().map_err(err)?;
            let mut out = Map::new();
            let mut entry = |d: &mut minicbor::Decoder<'_>| -> Result<(), String> {
                let key = d.str().map_err(err)?.to_string();
                let value = read(d, depth + 1)?;
                out.insert(key, value);
                Ok(())
            };
            match len {
                Some(n) => {
                    for _ in 0..n {
                        entry(d)?;
                    }
                }
                None => {
                    while d.datatype().map_err(err)? != Type::Break {
                        entry(d)?;
                    }
                    d.skip().map_err(err)?;
                }
            }
            Value::Object(out)
        }
        // Tag 1 (epoch seconds) and any other tag: the tagged value.
        Type::Tag => {
            d.tag().map_err(err)?;
            read(d, depth + 1)?
        }
        other => return Err(format!("unsupported CBOR item {other}")),
    })
}

fn float(x: f64) -> Value {
    Number::from_f64(x).map(Value::Number).unwrap_or(Value::Null)
}

/// A JSON answer as CBOR, with [`TIMESTAMP_FIELDS`] as tag 1 and
/// [`DOUBLE_FIELDS`] as floats.
pub fn from_json(value: &Value) -> Vec<u8> {
    let mut e = minicbor::Encoder::new(Vec::new());
    write(&mut e, value, Kind::Plain);
    e.into_writer()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Plain,
    Timestamp,
    Double,
}

fn write(e: &mut minicbor::Encoder<Vec<u8>>, value: &Value, kind: Kind) {
    // Writing into a Vec cannot fail.
    let _ = match value {
        Value::Null => e.null().map(|_| ()),
        Value::Bool(b) => e.bool(*b).map(|_| ()),
        Value::Number(n) => {
            if kind == Kind::Timestamp {
                let _ = e.tag(Tag::new(1));
            }
            match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) if kind != Kind::Double => e.i64(i).map(|_| ()),
                (_, Some(u), _) if kind != Kind::Double => e.u64(u).map(|_| ()),
                (_, _, Some(f)) => e.f64(f).map(|_| ()),
                _ => e.null().map(|_| ()),
            }
        }
        Value::String(s) => e.str(s).map(|_| ()),
        Value::Array(items) => {
            let _ = e.array(items.len() as u64);
            for item in items {
                write(e, item, kind);
            }
            Ok(())
        }
        Value::Object(map) => {
            let _ = e.map(map.len() as u64);
            for (k, v) in map {
                let _ = e.str(k);
                let kind = if TIMESTAMP_FIELDS.contains(&k.as_str()) {
                    Kind::Timestamp
                } else if DOUBLE_FIELDS.contains(&k.as_str()) {
                    Kind::Double
                } else {
                    Kind::Plain
                };
                write(e, v, kind);
            }
            Ok(())
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_bedrock_cbor_round_trips_with_timestamps_and_doubles() {
        let value = serde_json::json!({
            "MetricDataResults": [{"Id": "m0_0", "Timestamps": [1_700_000_000], "Values": [3], "StatusCode": "Complete"}],
            "NextToken": "t",
            "Flag": true,
            "Nothing": null
        });
        let bytes = from_json(&value);
        // Tag 1 precedes the timestamp; the value is a float.
        assert!(bytes.windows(2).any(|w| w == [0xc1, 0x1a]), "{bytes:x?}");
        let back = to_json(&bytes).unwrap();
        assert_eq!(back["MetricDataResults"][0]["Timestamps"][0], 1_700_000_000);
        assert_eq!(back["MetricDataResults"][0]["Values"][0].as_f64(), Some(3.0));
        assert_eq!(back["NextToken"], "t");
        assert!(to_json(&bytes[..bytes.len() - 3]).is_err(), "a cut body is an error");
        assert!(to_json(&[0x9f; 100]).is_err(), "deep nesting is refused");
    }
}
