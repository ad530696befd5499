-- The PostgreSQL schema of kuma-rs, version 1.
-- Apply it to an empty database, e.g. `psql -v ON_ERROR_STOP=1 -f schema.sql`, or let
-- `kuma-cp migrate up` do it.
BEGIN;

CREATE TABLE IF NOT EXISTS kuma_schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- Migration 1: initial
-- Resources, their change log, leader leases and the registry of control-plane instances.

-- One row per resource. Global types (Mesh) have mesh ''. Keys sort bytewise (COLLATE "C"), as
-- every other backend orders lists. `version` is the revision of the resource's latest write.
CREATE TABLE kuma_resources (
    type              text COLLATE "C" NOT NULL,
    mesh              text COLLATE "C" NOT NULL,
    name              text COLLATE "C" NOT NULL,
    version           bigint NOT NULL,
    spec              text NOT NULL,
    creation_time     timestamptz NOT NULL,
    modification_time timestamptz NOT NULL,
    PRIMARY KEY (type, mesh, name)
);
CREATE INDEX kuma_resources_mesh ON kuma_resources (mesh);

-- The revision of the latest write: one counter, advanced inside each write transaction (so a
-- rolled-back write leaves no gap), under the writers' advisory lock (so revision order is
-- commit order).
CREATE TABLE kuma_revision (
    id       boolean PRIMARY KEY DEFAULT true CHECK (id),
    revision bigint NOT NULL
);
INSERT INTO kuma_revision (id, revision) VALUES (true, 0);

-- The latest changes, one row per revision, pruned to the store's history length. A deletion
-- has no version, spec or times.
CREATE TABLE kuma_changes (
    revision          bigint PRIMARY KEY,
    kind              text NOT NULL CHECK (kind IN ('created', 'updated', 'deleted')),
    type              text COLLATE "C" NOT NULL,
    mesh              text COLLATE "C" NOT NULL,
    name              text COLLATE "C" NOT NULL,
    version           bigint,
    spec              text,
    creation_time     timestamptz,
    modification_time timestamptz
);

-- Leases of leader-only work: held by `holder` until `expires_at` (database time).
CREATE TABLE kuma_leader_leases (
    name       text PRIMARY KEY,
    holder     text NOT NULL,
    expires_at timestamptz NOT NULL
);

-- Control-plane instances sharing this database, each heartbeating its row.
CREATE TABLE kuma_instances (
    id          text PRIMARY KEY,
    api_address text NOT NULL,
    xds_address text NOT NULL,
    started_at  timestamptz NOT NULL,
    last_seen   timestamptz NOT NULL
);
INSERT INTO kuma_schema_migrations (version, name) VALUES (1, 'initial');

COMMIT;
