//! What the tests (`tests/it`), the benchmarks (`benches/`) and the fuzz targets (`fuzz/`)
//! share, so that none of them copies another's: a `redis-server` on a free loopback port
//! (`redis`), a test certificate authority (`pki`), and the properties of every surface that
//! takes outside bytes (`properties`).

pub mod pki;
pub mod properties;
pub mod redis;
