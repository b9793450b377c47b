-- eventsift tables as external, partitioned Parquet tables (Trino, Hive connector in catalog `hive`)

CREATE TABLE IF NOT EXISTS hive.default."guild_actions" (
  "event_id" varchar,
  "timestamp" timestamp(6),
  "event_type" varchar,
  "plugin_version" varchar,
  "host" varchar,
  "user_agent" varchar,
  "accept" varchar,
  "action" varchar,
  "raw_event" varchar,
  "source_partition" integer,
  "source_offset" bigint,
  "dt" varchar
)
WITH (
  external_location = 'file://<WAREHOUSE>/guild_actions',
  format = 'PARQUET',
  partitioned_by = ARRAY['dt']
);
CALL hive.system.sync_partition_metadata('default', 'guild_actions', 'FULL');

CREATE TABLE IF NOT EXISTS hive.default."horse_purchases" (
  "event_id" varchar,
  "timestamp" timestamp(6),
  "event_type" varchar,
  "plugin_version" varchar,
  "host" varchar,
  "user_agent" varchar,
  "accept" varchar,
  "speed" double,
  "size" varchar,
  "quantity" bigint,
  "raw_event" varchar,
  "source_partition" integer,
  "source_offset" bigint,
  "dt" varchar
)
WITH (
  external_location = 'file://<WAREHOUSE>/horse_purchases',
  format = 'PARQUET',
  partitioned_by = ARRAY['dt']
);
CALL hive.system.sync_partition_metadata('default', 'horse_purchases', 'FULL');

CREATE TABLE IF NOT EXISTS hive.default."sword_purchases" (
  "event_id" varchar,
  "timestamp" timestamp(6),
  "event_type" varchar,
  "plugin_version" varchar,
  "host" varchar,
  "user_agent" varchar,
  "accept" varchar,
  "color" varchar,
  "quantity" bigint,
  "raw_event" varchar,
  "source_partition" integer,
  "source_offset" bigint,
  "dt" varchar
)
WITH (
  external_location = 'file://<WAREHOUSE>/sword_purchases',
  format = 'PARQUET',
  partitioned_by = ARRAY['dt']
);
CALL hive.system.sync_partition_metadata('default', 'sword_purchases', 'FULL');
