use super::parse_grpc_timeout;
use std::time::Duration;

#[test]
fn grpc_timeout_is_parsed_by_the_grpc_grammar_only() {
    for (text, want) in [
        ("1S", Some(Duration::from_secs(1))),
        ("0n", Some(Duration::ZERO)),
        ("250m", Some(Duration::from_millis(250))),
        ("99999999H", Some(Duration::from_secs(99_999_999 * 3600))),
        ("00000007M", Some(Duration::from_secs(7 * 60))),
        // More than 8 digits, a sign, no digits, no or another unit.
        ("100000000S", None),
        ("+5S", None),
        ("-5S", None),
        ("S", None),
        ("5", None),
        ("5s", None),
        ("", None),
        (" 5S", None),
        // Once a panic: a multi-byte last character, and hours that overflow a u64.
        ("9é", None),
        ("é", None),
        ("18446744073709551615H", None),
        ("99999999999999999H", None),
    ] {
        assert_eq!(parse_grpc_timeout(text), want, "`{text}`");
    }
}
