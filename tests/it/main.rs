//! The integration tests: one binary, real sockets, loopback only.

mod browser;
mod check_config;
mod connections;
mod credentials;
mod deploy;
mod every_operation;
mod faults;
mod http_clients;
mod layering;
mod limits;
mod mtls;
mod observability;
mod properties;
mod python_client;
mod reflection;
mod replicas;
mod secrets;
mod seed_samples;
mod signing;
mod simulator;
mod simulator_state;
mod support;
mod tls;
mod traffic;
mod unary;
mod watch;
