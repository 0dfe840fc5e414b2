//! Writes each fuzz target's seed inputs, made from the repository's fixtures (operation
//! samples, signing vectors, the example configuration), to `<dir>/<target>/seed-NNNN`:
//! `cargo run --example fuzz_seeds -- fuzz/corpus` (what `fuzz/seed.sh` runs).

// Only the seeds are used here: the checks run in `tests/it/properties.rs` and `fuzz/`.
use ack_test_support::properties;

fn main() -> std::io::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "fuzz/corpus".to_string());
    let targets: [(&str, properties::Seeds); 6] = [
        ("request", properties::request::seeds),
        ("response", properties::response::seeds),
        ("signers", properties::signers::seeds),
        ("metadata", properties::metadata::seeds),
        ("config", properties::config::seeds),
        ("simulator_auth", properties::simulator_auth::seeds),
    ];
    for (target, seeds) in targets {
        let out = std::path::Path::new(&dir).join(target);
        std::fs::create_dir_all(&out)?;
        let seeds = seeds();
        for (i, seed) in seeds.iter().enumerate() {
            std::fs::write(out.join(format!("seed-{i:04}")), seed)?;
        }
        println!("{target}: {} seeds in {}", seeds.len(), out.display());
    }
    Ok(())
}
