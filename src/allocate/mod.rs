//! Per-key cost allocation (docs/DESIGN.md rule 3, "Cost allocation").
//!
//! Some providers bill at a coarser grain than their usage: Anthropic's cost
//! report has no API key (and no model for server tools), while its usage
//! report has both. With allocation on, each bill row is replaced by parts,
//! one per (API key, and model where the bill has none) of the usage rows of
//! the same day and bill grain, in proportion to their estimated cost, so
//! that the parts sum exactly to the bill and carry `cost_source =
//! allocated`. The parts replace the bill row in the bill endpoint's scope
//! and go through the same diff as any fetched row, so a re-sync of the same
//! bill and usage writes nothing, and a bill that cannot be allocated keeps
//! its coarse `billed` row (never both).
//!
//! Pure: no I/O and no clock; the sync calls [`allocate`] after both
//! endpoints were fetched (`crate::sync`).

pub mod split;

use std::collections::{BTreeMap, HashMap};

use crate::normalize::schema::{CostSource, Dec9, RecordType, Text, UsageRow};
use crate::providers::EndpointSpec;

/// How an adapter's bill is allocated to its usage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllocationSpec {
    /// The cost endpoint whose rows are the bill.
    pub bill: EndpointSpec,
    /// The usage endpoint whose rows share the bill out; fetched for whole
    /// bill buckets so every part sees the bucket's whole usage.
    pub basis: EndpointSpec,
    /// Attributes (grouping fields without a column) on which a usage row
    /// must agree with a bill row when both have them, e.g. `service_tier`.
    pub match_attributes: &'static [&'static str],
}

/// What decided the proportions of one bill row's parts; stored on each part
/// as the attribute `allocation_basis`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Basis {
    /// The usage rows' `estimated_cost` (tokens x list price).
    EstimatedCost,
    /// Their `quantity` (e.g. web searches), where no estimate exists.
    Quantity,
    /// Their input + output tokens, where neither exists (an unpriced model).
    Tokens,
}

impl Basis {
    pub fn as_str(self) -> &'static str {
        match self {
            Basis::EstimatedCost => "estimated_cost",
            Basis::Quantity => "quantity",
            Basis::Tokens => "tokens",
        }
    }
}

/// What an allocation did, for logs and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The rows to store for the bill endpoint: parts and unallocated bills.
    pub rows: Vec<UsageRow>,
    /// Bill rows replaced by parts.
    pub allocated: usize,
    /// Bill rows kept as they are (no usage, no weight, nothing to split).
    pub kept: usize,
}

/// Replaces each row of `bill` that matching `basis` usage can share out by
/// its parts; every other bill row is returned unchanged. Deterministic: the
/// same bill and usage give the same rows, keys and amounts in any order.
pub fn allocate(spec: &AllocationSpec, bill: &[UsageRow], basis: &[UsageRow]) -> Outcome {
    let mut index: HashMap<(&str, &str, &str), Vec<&UsageRow>> = HashMap::new();
    for row in basis.iter().filter(|r| r.record_type == RecordType::Usage.as_str()) {
        index
            .entry((&row.workspace_id, &row.project_id, &row.service))
            .or_default()
            .push(row);
    }
    let mut outcome = Outcome::default();
    for row in bill {
        let candidates = index
            .get(&(row.workspace_id.as_str(), row.project_id.as_str(), row.service.as_str()))
            .map(Vec::as_slice)
            .unwrap_or_default();
        match allocate_one(spec, row, candidates) {
            Some(parts) => {
                outcome.allocated += 1;
                outcome.rows.extend(parts);
            }
            None => {
                outcome.kept += 1;
                outcome.rows.push(row.clone());
            }
        }
    }
    outcome
}

/// One part's target: an API key, and the model when the bill names none.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
struct Target {
    api_key_id: Text,
    /// Empty when the bill row has a model (the parts keep the bill's).
    model_raw: Text,
}

/// Reads one kind of weight of a target.
type WeightOf = fn(&Weight<'_>) -> i128;

/// The usage behind one target.
#[derive(Default)]
struct Weight<'a> {
    estimated: i128,
    quantity: i128,
    tokens: i128,
    /// The row the target's descriptive columns (hint, model) come from: the
    /// greatest hint, so the choice does not depend on row order.
    sample: Option<&'a UsageRow>,
}

fn allocate_one(spec: &AllocationSpec, bill: &UsageRow, candidates: &[&UsageRow]) -> Option<Vec<UsageRow>> {
    if bill.record_type != RecordType::Cost.as_str() || bill.cost_source != CostSource::Billed.as_str() {
        return None;
    }
    // Cost rows carry no tokens or requests (rule 3); one that did could not
    // be split without inventing counts, so it stays whole.
    if bill.input_tokens != 0
        || bill.output_tokens != 0
        || bill.cached_input_tokens != 0
        || bill.cache_creation_tokens != 0
        || bill.requests != 0
    {
        return None;
    }
    let money = [
        bill.quantity,
        bill.cost,
        bill.estimated_cost,
        bill.credits,
        bill.amount_original,
    ];
    if money.iter().all(|m| m.is_zero()) {
        return None;
    }
    let bill_attributes = attributes(&bill.attributes);
    let wanted: Vec<(&str, &str)> = spec
        .match_attributes
        .iter()
        .filter_map(|name| bill_attributes.get(name).map(|v| (*name, *v)))
        .collect();
    let mut targets: BTreeMap<Target, Weight<'_>> = BTreeMap::new();
    for usage in candidates {
        let in_bucket = usage.bucket_start >= bill.bucket_start && usage.bucket_start < bill.bucket_end;
        if !in_bucket || (!bill.model.is_empty() && usage.model != bill.model) {
            continue;
        }
        let usage_attributes = attributes(&usage.attributes);
        // Constrained where both rows have the field: a usage report that
        // cannot group by it says nothing against the bill's value.
        if wanted
            .iter()
            .any(|(name, value)| usage_attributes.get(name).is_some_and(|v| v != value))
        {
            continue;
        }
        let target = Target {
            api_key_id: usage.api_key_id.clone(),
            model_raw: if bill.model.is_empty() {
                usage.model_raw.clone()
            } else {
                Text::default()
            },
        };
        let weight = targets.entry(target).or_default();
        weight.estimated = weight.estimated.checked_add(usage.estimated_cost.0)?;
        weight.quantity = weight.quantity.checked_add(usage.quantity.0)?;
        weight.tokens = weight
            .tokens
            .checked_add(i128::from(usage.input_tokens))?
            .checked_add(i128::from(usage.output_tokens))?;
        if weight.sample.is_none_or(|s| usage.api_key_hint > s.api_key_hint) {
            weight.sample = Some(usage);
        }
    }
    let tiers: [(Basis, WeightOf); 3] = [
        (Basis::EstimatedCost, |w| w.estimated),
        (Basis::Quantity, |w| w.quantity),
        (Basis::Tokens, |w| w.tokens),
    ];
    let (basis, weights) = tiers.iter().find_map(|(basis, of)| {
        let weights: Vec<i128> = targets.values().map(of).collect();
        (weights.iter().all(|w| *w >= 0) && weights.iter().any(|w| *w > 0)).then_some((*basis, weights))
    })?;
    // Each measure is split on its own with the same weights: each sums
    // exactly to the bill's.
    let shares: Vec<Vec<i128>> = money
        .iter()
        .map(|m| split::split(m.0, &weights))
        .collect::<Option<_>>()?;
    let mut parts = Vec::with_capacity(targets.len());
    for (i, (target, weight)) in targets.iter().enumerate() {
        let amounts: Vec<Dec9> = shares.iter().map(|s| Dec9(s[i])).collect();
        if amounts.iter().all(|a| a.is_zero()) {
            continue;
        }
        let sample = weight.sample.expect("a target has at least one usage row");
        let mut part = bill.clone();
        part.record_key = part_key(bill.record_key, target);
        part.api_key_id = target.api_key_id.clone();
        part.api_key_hint = sample.api_key_hint.clone();
        if bill.model.is_empty() {
            part.model = sample.model.clone();
            part.model_raw = sample.model_raw.clone();
            part.model_family = sample.model_family.clone();
        }
        [
            part.quantity,
            part.cost,
            part.estimated_cost,
            part.credits,
            part.amount_original,
        ] = [amounts[0], amounts[1], amounts[2], amounts[3], amounts[4]];
        part.cost_source = CostSource::Allocated.text();
        // The bill's attributes describe the bill row the part came from
        // (a list price there is the whole row's); `allocated_from` names it.
        let mut attrs = bill_attributes.clone();
        let from = format!("{:016x}", bill.record_key);
        attrs.insert("allocation_basis", basis.as_str());
        attrs.insert("allocated_from", &from);
        part.attributes = render_attributes(&attrs).into();
        // A part is new content: the bill's fingerprint does not hold for it.
        part.content_hash = part.fingerprint();
        parts.push(part);
    }
    Some(parts)
}

/// Domain of [`part_key`]'s encoding.
const PART_KEY_DOMAIN: &[u8] = b"tokentra.allocation_key.v1";

/// The record key of one part: XXH3-64 (seed 0) over
/// `"tokentra.allocation_key.v1" u64_be(bill record_key) str(api_key_id)
/// str(model_raw)` with `str(s) = u32_be(byte length) ++ utf8` and
/// `model_raw` empty when the bill names the model. Only raw provider
/// values: a key hint or a better model normalizer never re-keys a part.
/// Pinned by a test vector.
pub fn part_key_encoding(bill_key: u64, api_key_id: &str, model_raw: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(PART_KEY_DOMAIN);
    out.extend_from_slice(&bill_key.to_be_bytes());
    for text in [api_key_id, model_raw] {
        let len = u32::try_from(text.len()).expect("field shorter than 4 GiB");
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(text.as_bytes());
    }
    out
}

fn part_key(bill_key: u64, target: &Target) -> u64 {
    xxhash_rust::xxh3::xxh3_64(&part_key_encoding(bill_key, &target.api_key_id, &target.model_raw))
}

/// The `attributes` column (`k=v` lines, sorted) as a map.
fn attributes(text: &str) -> BTreeMap<&str, &str> {
    text.lines().filter_map(|line| line.split_once('=')).collect()
}

fn render_attributes(attrs: &BTreeMap<&str, &str>) -> String {
    attrs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests;
