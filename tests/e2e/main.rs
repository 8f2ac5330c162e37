//! The end-to-end suites, in one test binary: each module starts real
//! keyledger servers (on both backends where a store is involved) and
//! talks to them over HTTP like any client.

mod access;
mod anomalies;
mod client_protocol;
mod concurrency;
mod customers;
mod devices;
mod dialects;
mod enumeration;
mod eventlog;
mod hardening;
mod keygen;
mod leads;
mod lifecycle;
mod limits;
mod nats;
mod panel;
mod policies;
mod products;
mod propagation;
mod proxies;
mod startup;
mod strict_bodies;
mod thin_dialects;
mod upgrade;
mod webhooks;
