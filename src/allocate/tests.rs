use std::str::FromStr;

use rust_decimal::Decimal;

use super::*;
use crate::normalize::schema::Granularity;

const DAY: u32 = 1_754_006_400; // 2025-08-01T00:00:00Z

const SPEC: AllocationSpec = AllocationSpec {
    bill: EndpointSpec {
        record_type: RecordType::Cost,
        endpoint: "cost_report",
        granularity: Granularity::Day,
    },
    basis: EndpointSpec {
        record_type: RecordType::Usage,
        endpoint: "usage_report/messages",
        granularity: Granularity::Hour,
    },
    match_attributes: &["service_tier", "context_window"],
};

/// A row with every field empty or zero.
fn base() -> UsageRow {
    UsageRow::default()
}

fn usd(text: &str) -> Dec9 {
    Dec9::from_decimal(Decimal::from_str(text).unwrap())
}

fn bill(key: u64, model: &str, cost: &str, attributes: &str) -> UsageRow {
    UsageRow {
        connection_id: "acme".into(),
        provider: "anthropic".into(),
        record_type: "cost".into(),
        endpoint: "cost_report".into(),
        bucket_start: DAY,
        bucket_end: DAY + 86_400,
        granularity: "1d".into(),
        record_key: key,
        model: model.into(),
        model_raw: if model.is_empty() {
            Default::default()
        } else {
            format!("{model}-20250514").into()
        },
        service: if model.is_empty() { "web_search" } else { "messages" }.into(),
        workspace_id: "wrk_1".into(),
        line_item: "Claude Usage - Input Tokens".into(),
        attributes: attributes.into(),
        cost: usd(cost),
        amount_original: Dec9::from_decimal(Decimal::from_str(cost).unwrap() * Decimal::ONE_HUNDRED),
        cost_source: "billed".into(),
        currency: "USD".into(),
        sign: 1,
        ..base()
    }
}

fn usage(hour: u32, key: &str, model: &str, estimate: &str) -> UsageRow {
    UsageRow {
        connection_id: "acme".into(),
        provider: "anthropic".into(),
        record_type: "usage".into(),
        endpoint: "usage_report/messages".into(),
        bucket_start: DAY + hour * 3_600,
        bucket_end: DAY + (hour + 1) * 3_600,
        granularity: "1h".into(),
        record_key: u64::from(hour) << 32 | key.len() as u64,
        model: model.into(),
        model_raw: format!("{model}-20250514").into(),
        model_family: "claude".into(),
        service: "messages".into(),
        workspace_id: "wrk_1".into(),
        api_key_id: key.into(),
        attributes: "context_window=0-200k\nservice_tier=standard".into(),
        input_tokens: 1_000,
        output_tokens: 100,
        estimated_cost: usd(estimate),
        sign: 1,
        ..base()
    }
}

fn sum_cost(rows: &[UsageRow]) -> i128 {
    rows.iter().map(|r| r.cost.0).sum()
}

fn cost_of(rows: &[UsageRow], key: &str) -> Option<String> {
    rows.iter().find(|r| r.api_key_id == key).map(|r| r.cost.to_string())
}

#[test]
fn a_dollar_in_thirds_sums_exactly_and_the_spare_unit_goes_to_the_lowest_key() {
    let b = bill(
        7,
        "claude-sonnet-4",
        "1",
        "context_window=0-200k\nservice_tier=standard",
    );
    let basis = [
        usage(1, "key_c", "claude-sonnet-4", "0.5"),
        usage(2, "key_a", "claude-sonnet-4", "0.5"),
        usage(3, "key_b", "claude-sonnet-4", "0.25"),
        usage(4, "key_b", "claude-sonnet-4", "0.25"),
    ];
    let out = allocate(&SPEC, std::slice::from_ref(&b), &basis);
    assert_eq!((out.allocated, out.kept), (1, 0));
    assert_eq!(out.rows.len(), 3);
    assert_eq!(sum_cost(&out.rows), b.cost.0);
    assert_eq!(cost_of(&out.rows, "key_a").unwrap(), "0.333333334");
    assert_eq!(cost_of(&out.rows, "key_b").unwrap(), "0.333333333");
    assert_eq!(cost_of(&out.rows, "key_c").unwrap(), "0.333333333");
    // Cents are split by the same rule and sum to the bill's cents.
    assert_eq!(
        out.rows.iter().map(|r| r.amount_original.0).sum::<i128>(),
        b.amount_original.0
    );
    for part in &out.rows {
        assert_eq!(part.cost_source, "allocated");
        assert_eq!(part.model, "claude-sonnet-4");
        assert_eq!((part.bucket_start, part.endpoint.as_str()), (DAY, "cost_report"));
        assert!(
            part.attributes.contains("allocation_basis=estimated_cost"),
            "{}",
            part.attributes
        );
        assert_ne!(part.record_key, b.record_key);
        // A part is new content: it carries its own fingerprint, not the bill's.
        assert_eq!(part.content_hash, part.fingerprint());
    }
    let keys: std::collections::BTreeSet<u64> = out.rows.iter().map(|r| r.record_key).collect();
    assert_eq!(keys.len(), 3, "every part has its own key");
}

#[test]
fn tiny_amounts_give_whole_units_to_the_largest_shares_only() {
    let b = bill(7, "claude-sonnet-4", "0.000000002", "");
    let basis = [
        usage(1, "key_a", "claude-sonnet-4", "1"),
        usage(2, "key_b", "claude-sonnet-4", "2"),
        usage(3, "key_c", "claude-sonnet-4", "3"),
    ];
    let out = allocate(&SPEC, std::slice::from_ref(&b), &basis);
    // Shares 1/3, 2/3, 1 units: floors 0, 0, 1; the spare unit goes to key_b
    // (remainder 2/3 beats 1/3). key_a's part holds only its share of the
    // cents (each measure is split on its own and sums exactly).
    assert_eq!(cost_of(&out.rows, "key_a").unwrap(), "0");
    assert_eq!(cost_of(&out.rows, "key_b").unwrap(), "0.000000001");
    assert_eq!(cost_of(&out.rows, "key_c").unwrap(), "0.000000001");
    assert_eq!(sum_cost(&out.rows), b.cost.0);
    assert_eq!(
        out.rows.iter().map(|r| r.amount_original.0).sum::<i128>(),
        b.amount_original.0
    );
    // One unit among many: only the largest share gets it, and parts that
    // would be all zero are not stored.
    let one = bill(8, "claude-sonnet-4", "0.000000001", "");
    let mut one = one;
    one.amount_original = Dec9(0);
    let out = allocate(&SPEC, &[one], &basis);
    assert_eq!(out.rows.len(), 1);
    assert_eq!(cost_of(&out.rows, "key_c").unwrap(), "0.000000001");
}

#[test]
fn usage_without_an_estimate_gets_nothing_beside_usage_with_one() {
    let b = bill(7, "claude-sonnet-4", "10", "");
    let basis = [
        usage(1, "key_a", "claude-sonnet-4", "0"),
        usage(2, "key_b", "claude-sonnet-4", "3"),
    ];
    let out = allocate(&SPEC, &[b], &basis);
    assert_eq!(out.rows.len(), 1);
    assert_eq!(cost_of(&out.rows, "key_b").unwrap(), "10");
}

#[test]
fn no_estimate_at_all_falls_back_to_quantity_then_tokens() {
    // A web search bill has no model; its usage rows count searches.
    let b = bill(9, "", "0.03", "");
    let searches = |hour, key: &str, model: &str, count: i64| {
        let mut row = usage(hour, key, model, "0");
        row.service = "web_search".into();
        row.quantity = Dec9::from_decimal(Decimal::from(count));
        row.unit = "requests".into();
        row.input_tokens = 0;
        row.output_tokens = 0;
        row
    };
    let basis = [
        searches(1, "key_a", "claude-sonnet-4", 2),
        searches(2, "key_a", "claude-opus-4", 1),
    ];
    let out = allocate(&SPEC, std::slice::from_ref(&b), &basis);
    assert_eq!(out.rows.len(), 2, "split by key and model");
    let by_model = |m: &str| out.rows.iter().find(|r| r.model == m).unwrap().cost.to_string();
    assert_eq!(by_model("claude-sonnet-4"), "0.02");
    assert_eq!(by_model("claude-opus-4"), "0.01");
    assert!(out
        .rows
        .iter()
        .all(|r| r.attributes == "allocated_from=0000000000000009\nallocation_basis=quantity"));
    assert_eq!(sum_cost(&out.rows), b.cost.0);

    // Unpriced tokens: in proportion to input + output.
    let b = bill(7, "claude-new", "3", "");
    let basis = [usage(1, "key_a", "claude-new", "0"), {
        let mut r = usage(2, "key_b", "claude-new", "0");
        r.input_tokens = 2_000;
        r.output_tokens = 200;
        r
    }];
    let out = allocate(&SPEC, &[b], &basis);
    assert_eq!(cost_of(&out.rows, "key_a").unwrap(), "1");
    assert_eq!(cost_of(&out.rows, "key_b").unwrap(), "2");
}

#[test]
fn a_bill_without_matching_usage_or_weight_keeps_its_billed_row() {
    let b = bill(7, "claude-sonnet-4", "5", "context_window=0-200k\nservice_tier=batch");
    // Same day and workspace but another tier; another model; another day;
    // another workspace; and all-zero usage.
    let mut other_day = usage(1, "key_a", "claude-sonnet-4", "1");
    other_day.bucket_start += 86_400;
    let mut other_ws = usage(1, "key_a", "claude-sonnet-4", "1");
    other_ws.workspace_id = "wrk_2".into();
    let mut idle = usage(3, "key_z", "claude-sonnet-4", "0");
    idle.attributes = "context_window=0-200k\nservice_tier=batch".into();
    idle.input_tokens = 0;
    idle.output_tokens = 0;
    let basis = [
        usage(1, "key_a", "claude-sonnet-4", "1"),
        usage(2, "key_b", "claude-opus-4", "1"),
        other_day,
        other_ws,
        idle,
    ];
    let out = allocate(&SPEC, std::slice::from_ref(&b), &basis);
    assert_eq!((out.allocated, out.kept), (0, 1));
    assert_eq!(out.rows, vec![b]);
}

#[test]
fn only_usage_of_the_bills_day_workspace_model_and_tier_shares_it() {
    let b = bill(
        7,
        "claude-sonnet-4",
        "4",
        "context_window=0-200k\nservice_tier=standard\ntoken_type=output_tokens",
    );
    let mut batch = usage(1, "key_x", "claude-sonnet-4", "100");
    batch.attributes = "context_window=0-200k\nservice_tier=batch".into();
    let mut next_day = usage(1, "key_y", "claude-sonnet-4", "100");
    next_day.bucket_start = DAY + 86_400;
    let basis = [
        usage(0, "key_a", "claude-sonnet-4", "1"),
        usage(23, "key_b", "claude-sonnet-4", "3"),
        usage(5, "key_c", "claude-opus-4", "100"),
        batch,
        next_day,
    ];
    let out = allocate(&SPEC, &[b], &basis);
    assert_eq!(out.rows.len(), 2);
    assert_eq!(cost_of(&out.rows, "key_a").unwrap(), "1");
    assert_eq!(cost_of(&out.rows, "key_b").unwrap(), "3");
    // The bill's own attributes stay; the basis is added.
    assert!(out.rows[0].attributes.contains("token_type=output_tokens"));
}

#[test]
fn the_result_does_not_depend_on_row_order() {
    let bills = [
        bill(1, "claude-sonnet-4", "1.000000001", ""),
        bill(2, "claude-sonnet-4", "0.1", ""),
    ];
    let mut basis: Vec<UsageRow> = (0..24)
        .map(|h| usage(h, ["k1", "k2", "k3"][h as usize % 3], "claude-sonnet-4", "0.7"))
        .collect();
    let first = allocate(&SPEC, &bills, &basis);
    basis.reverse();
    let second = allocate(&SPEC, &bills, &basis);
    assert_eq!(first, second);
    assert_eq!(sum_cost(&first.rows), bills.iter().map(|b| b.cost.0).sum::<i128>());
}

#[test]
fn negative_and_zero_bills() {
    let credit_like = bill(3, "claude-sonnet-4", "-1", "");
    let basis = [
        usage(1, "key_a", "claude-sonnet-4", "1"),
        usage(2, "key_b", "claude-sonnet-4", "2"),
    ];
    let out = allocate(&SPEC, &[credit_like], &basis);
    assert_eq!(cost_of(&out.rows, "key_a").unwrap(), "-0.333333333");
    assert_eq!(cost_of(&out.rows, "key_b").unwrap(), "-0.666666667");
    let zero = bill(4, "claude-sonnet-4", "0", "");
    let out = allocate(&SPEC, std::slice::from_ref(&zero), &basis);
    assert_eq!(out.rows, vec![zero], "nothing to share: the row stays billed");
}

#[test]
fn part_key_is_pinned() {
    let encoding = part_key_encoding(0x0102_0304_0506_0708, "key", "");
    assert_eq!(
        encoding,
        [
            b"tokentra.allocation_key.v1".as_slice(),
            &[1, 2, 3, 4, 5, 6, 7, 8],
            &[0, 0, 0, 3],
            b"key",
            &[0, 0, 0, 0],
        ]
        .concat()
    );
    let target = Target {
        api_key_id: "apikey_01".into(),
        model_raw: Default::default(),
    };
    // A regression pin: the encoding above is checked byte for byte.
    assert_eq!(part_key(42, &target), 16_461_732_333_617_799_017);
}
