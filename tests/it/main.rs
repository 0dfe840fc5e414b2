//! The integration tests: one binary, real sockets, loopback only.

mod python_client;
mod support;
mod unary;
