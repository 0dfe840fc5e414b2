#![no_main]
//! See `tests/properties/simulator_auth.rs` for the input layout and the property.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ack_gateway_fuzz::properties::simulator_auth::check(data);
});
