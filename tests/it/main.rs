//! The integration tests: one binary, real sockets, loopback only.

mod every_operation;
mod python_client;
mod support;
mod unary;
