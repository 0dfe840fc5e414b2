//! The integration tests: one binary, real sockets, loopback only.

mod deploy;
mod every_operation;
mod python_client;
mod seed_samples;
mod simulator;
mod support;
mod unary;
