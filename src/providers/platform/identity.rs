//! The one identity rule for raw grouping fields, shared by every adapter:
//! a record's identity is every scalar field of the provider's row that is
//! not a measure, exactly as returned. A null stays `Null` (it means
//! something of its own: a default workspace, a Workbench key) and never
//! merges with `""`; numbers keep their JSON text; objects and arrays are not
//! grouping fields. Nothing derived ever enters the identity.

use std::collections::BTreeMap;

use super::json::{Json, Object};

use crate::normalize::schema::{RawField, RawGroup, Text};

/// The raw grouping fields of `row`: every scalar field for which
/// `is_measure(name, value)` is false.
pub fn raw_group(row: &Object, is_measure: impl Fn(&str, &Json) -> bool) -> RawGroup {
    row.iter()
        .filter(|(name, value)| !is_measure(name, value))
        .filter_map(|(name, value)| RawField::from_json(value).map(|field| (Text::new(name), field)))
        .collect()
}

/// Grouping fields that have no column of their own, as `attributes`. Nulls
/// are left out: they only say the report was not grouped by that field.
pub fn attributes(raw_group: &RawGroup, columns: &[&str]) -> BTreeMap<Text, Text> {
    raw_group
        .iter()
        .filter(|(name, field)| !columns.contains(name) && **field != RawField::Null)
        .map(|(name, field)| (Text::from(name), field.as_text()))
        .collect()
}

/// A grouping field as column text; absent and null are both "".
pub fn text(raw_group: &RawGroup, name: &str) -> Text {
    raw_group.get(name).map(RawField::as_text).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nulls_stay_objects_go_measures_are_excluded() {
        let row =
            Json::parse(br#"{"workspace_id": null, "model": "m", "n": 3, "amount": "1", "nested": {"a": 1}}"#).unwrap();
        let group = raw_group(row.as_object().unwrap(), |name, _| name == "amount");
        let names: Vec<&str> = group.keys().collect();
        assert_eq!(names, ["model", "n", "workspace_id"]);
        assert_eq!(group["workspace_id"], RawField::Null);
        assert_eq!(group["n"], RawField::Number("3".into()));
        let attrs = attributes(&group, &["model"]);
        assert_eq!(
            attrs.into_iter().collect::<Vec<_>>(),
            [(Text::from("n"), Text::from("3"))]
        );
        assert_eq!(text(&group, "workspace_id"), "");
        assert_eq!(text(&group, "absent"), "");
    }
}
