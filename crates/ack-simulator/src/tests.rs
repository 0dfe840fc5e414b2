//! Tests of the simulator over real sockets: requests signed as the gateway signs them (ROA V1)
//! and sent over plain HTTP/1.1 to a running simulator, so a fault that closes the connection
//! is seen as a caller sees it. One module per topic: how a write's answer is lost, applied
//! writes, client tokens, a cluster kept busy by its tasks, node pool counts while tasks run,
//! cluster events and inspection reports; `harness` holds what they share.

mod applied;
mod busy_clusters;
mod client_tokens;
mod events;
mod harness;
mod inspections;
mod lost_answers;
mod nodepools;
