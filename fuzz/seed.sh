#!/bin/sh
# Writes the seed corpora, made from the repository's fixtures, to fuzz/corpus/<target>/
# (libFuzzer adds what it finds to the same directories; neither is committed).
set -eu
cd "$(dirname "$0")/.."
cargo run --quiet --example fuzz_seeds -- fuzz/corpus
