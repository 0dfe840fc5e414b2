//! The fuzz targets' properties (`ack_test_support::properties`), on stable: each on its seeds, on
//! mutations of them and on generated inputs, a fixed number of cases from a fixed RNG seed,
//! so a failure reproduces. `fuzz/` runs the same properties under libFuzzer for as long as
//! one likes.

use ack_test_support::properties as checks;

use arbitrary::Unstructured;
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

/// Random bytes, up to `max` of them.
fn random_bytes(rng: &mut StdRng, max: usize) -> Vec<u8> {
    let mut bytes = vec![0; rng.random_range(0..=max)];
    rng.fill_bytes(&mut bytes);
    bytes
}

/// A seed with a few bytes changed, inserted or removed.
fn mutate(rng: &mut StdRng, seed: &[u8]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        let at = rng.random_range(0..=b.len());
        match rng.random_range(0..3) {
            0 if at < b.len() => b[at] = rng.random(),
            1 => b.insert(at, rng.random()),
            _ if at < b.len() => {
                b.remove(at);
            }
            _ => {}
        }
    }
    b
}

/// The inputs the fuzz target once failed on (`fuzz/regressions/<target>/`), kept as they
/// were found.
fn regressions(name: &str) -> Vec<Vec<u8>> {
    let dir = checks::repo_root().join("fuzz/regressions").join(name);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| std::fs::read(e.ok()?.path()).ok())
        .collect()
}

/// The target's regressions and seeds, `cases` mutations of the seeds, `cases` random inputs
/// and `cases` structured ones (when the target has a generator).
fn run(
    name: &str,
    check: checks::Check,
    seeds: checks::Seeds,
    cases: usize,
    generate: Option<checks::Generate>,
) {
    let seeds = seeds();
    let mut rng = StdRng::seed_from_u64(0x5eed_0000 ^ name.len() as u64);
    assert!(!seeds.is_empty(), "{name}: no seeds");
    for input in regressions(name).iter().chain(&seeds) {
        check(input);
    }
    for i in 0..cases {
        check(&mutate(&mut rng, &seeds[i % seeds.len()]));
        check(&random_bytes(&mut rng, 512));
    }
    if let Some(generate) = generate {
        for _ in 0..cases {
            let raw = random_bytes(&mut rng, 4096);
            if let Ok(input) = generate(&mut Unstructured::new(&raw)) {
                check(&input);
            }
        }
    }
}

#[test]
fn request_messages_map_to_calls_within_their_templates() {
    run(
        "request",
        checks::request::check,
        checks::request::seeds,
        600,
        Some(checks::request::generate),
    );
}

#[test]
fn upstream_answers_decode_or_classify_without_quoting_secrets() {
    run(
        "response",
        checks::response::check,
        checks::response::seeds,
        2000,
        None,
    );
}

#[test]
fn signatures_are_functions_of_their_input_and_diagnoses_name_no_token() {
    run(
        "signers",
        checks::signers::check,
        checks::signers::seeds,
        2000,
        None,
    );
}

#[test]
fn metadata_parses_by_its_grammar_and_tokens_authenticate_their_caller() {
    run(
        "metadata",
        checks::metadata::check,
        checks::metadata::seeds,
        2000,
        None,
    );
}

#[test]
fn configuration_errors_name_keys_and_never_an_inline_secret() {
    run(
        "config",
        checks::config::check,
        checks::config::seeds,
        1000,
        None,
    );
}

#[test]
fn the_simulator_verifies_what_the_signers_sign_and_survives_anything_else() {
    run(
        "simulator_auth",
        checks::simulator_auth::check,
        checks::simulator_auth::seeds,
        2000,
        None,
    );
}
