//! The service's integration tests, one module per area, in one test binary (it links once).
//! Each starts callpool in-process on port 0 (or runs the `callpool` binary) against real
//! Redis and RabbitMQ and strict local fakes of the internet services.

mod common;
mod pki;

mod architecture;

mod asterisk;
mod callback;
mod calls;
mod cli;
mod cluster;
mod crm;
mod digest;
mod fuzz;
mod ga4_setup;
mod hub;
mod nginx;
mod ops;
mod reload;
mod reports;
mod server;
mod store;
mod webhooks;
