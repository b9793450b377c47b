-- eventsift tables as external, partitioned Parquet tables (Trino, Hive connector in catalog `hive`)
-- The catalog `hive` needs (etc/catalog/hive.properties):
--   connector.name=hive
--   hive.timestamp-precision=MICROSECONDS   (timestamps are microseconds)
--   hive.partition-projection-enabled=true  (dt is projected: new days appear by themselves,
--   hive.ignore-absent-partitions=true       from the first day below to today)
--   fs.native-local.enabled=true, local.location=/   (local warehouses: local:// paths)
--   fs.hadoop.enabled=true                  (HDFS warehouses)
-- and a metastore (hive.metastore=file or thrift). Data older than a table's first
-- projected day (a backfill) needs this DDL printed again.
CREATE SCHEMA IF NOT EXISTS hive.default;

CREATE TABLE IF NOT EXISTS hive.default."guild_actions" (
  "event_id" varchar,
  "timestamp" timestamp(6),
  "event_type" varchar,
  "plugin_version" varchar,
  "host" varchar,
  "user_agent" varchar,
  "accept" varchar,
  "user_id" varchar,
  "game_id" varchar,
  "client_ts" timestamp(6),
  "event_ts" timestamp(6),
  "action" varchar,
  "raw_event" varchar,
  "source_partition" integer,
  "source_offset" bigint,
  "dt" varchar WITH (
    partition_projection_type = 'DATE',
    partition_projection_format = 'yyyy-MM-dd',
    partition_projection_range = ARRAY['<TODAY>', 'NOW']
  )
)
WITH (
  external_location = 'local://<WAREHOUSE>/guild_actions',
  format = 'PARQUET',
  partitioned_by = ARRAY['dt'],
  partition_projection_enabled = true,
  partition_projection_location_template = 'local://<WAREHOUSE>/guild_actions/dt=${dt}'
);

CREATE TABLE IF NOT EXISTS hive.default."horse_purchases" (
  "event_id" varchar,
  "timestamp" timestamp(6),
  "event_type" varchar,
  "plugin_version" varchar,
  "host" varchar,
  "user_agent" varchar,
  "accept" varchar,
  "user_id" varchar,
  "game_id" varchar,
  "client_ts" timestamp(6),
  "event_ts" timestamp(6),
  "speed" double,
  "size" varchar,
  "quantity" bigint,
  "raw_event" varchar,
  "source_partition" integer,
  "source_offset" bigint,
  "dt" varchar WITH (
    partition_projection_type = 'DATE',
    partition_projection_format = 'yyyy-MM-dd',
    partition_projection_range = ARRAY['<TODAY>', 'NOW']
  )
)
WITH (
  external_location = 'local://<WAREHOUSE>/horse_purchases',
  format = 'PARQUET',
  partitioned_by = ARRAY['dt'],
  partition_projection_enabled = true,
  partition_projection_location_template = 'local://<WAREHOUSE>/horse_purchases/dt=${dt}'
);

CREATE TABLE IF NOT EXISTS hive.default."sword_purchases" (
  "event_id" varchar,
  "timestamp" timestamp(6),
  "event_type" varchar,
  "plugin_version" varchar,
  "host" varchar,
  "user_agent" varchar,
  "accept" varchar,
  "user_id" varchar,
  "game_id" varchar,
  "client_ts" timestamp(6),
  "event_ts" timestamp(6),
  "color" varchar,
  "quantity" bigint,
  "raw_event" varchar,
  "source_partition" integer,
  "source_offset" bigint,
  "dt" varchar WITH (
    partition_projection_type = 'DATE',
    partition_projection_format = 'yyyy-MM-dd',
    partition_projection_range = ARRAY['<TODAY>', 'NOW']
  )
)
WITH (
  external_location = 'local://<WAREHOUSE>/sword_purchases',
  format = 'PARQUET',
  partitioned_by = ARRAY['dt'],
  partition_projection_enabled = true,
  partition_projection_location_template = 'local://<WAREHOUSE>/sword_purchases/dt=${dt}'
);
