#![no_main]
//! See `tests/properties/signers.rs` for the input layout and the property.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ack_gateway_fuzz::properties::signers::check(data);
});
