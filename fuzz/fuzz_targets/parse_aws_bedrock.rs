//! The aws_bedrock response parsers on arbitrary bytes: the first byte picks
//! the parser, the rest is the body. Any panic is a finding.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tokentra_sync::providers::aws_bedrock::fuzz_parse(data));
