//! The PostgreSQL store against real PostgreSQL servers (`kuma_test_support::PgServer`, one per
//! test): the store conformance suite, and what only a shared database has to get right: the
//! change feed surviving a dropped LISTEN connection, migrations, TLS modes, the leader lease, the
//! instance registry, and a database outage.

mod conformance;
mod leader;
mod migrations;
mod outage;
mod store;
mod support;
mod tls;
mod watch;
