#![no_main]
//! See `tests/properties/config.rs` for the input layout and the property.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ack_gateway_fuzz::properties::config::check(data);
});
