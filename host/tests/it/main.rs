//! Integration tests of the eventsift host. One binary (one link) with a
//! module per area.

mod api;
mod chaos;
mod commit;
mod crash;
mod delta;
mod deploy;
mod exactly_once;
mod ingest;
mod kit;
mod limits;
mod operate;
mod outages;
mod plugins;
mod query;
mod readers;
mod services;
mod support;
mod typescript;
mod writer;
