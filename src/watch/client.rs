//! The `ack-gateway watch` command: a client of the Watch service that renders live progress
//! in a terminal.
