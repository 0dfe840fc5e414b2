//! The integration tests: one binary, real sockets, loopback only.

mod support;
mod unary;
