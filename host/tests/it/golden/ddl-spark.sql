-- eventsift tables as external, partitioned Parquet tables (Spark SQL)
-- The catalog does not track these tables' partitions: every query sees new dt= folders.
SET spark.sql.hive.manageFilesourcePartitions=false;

CREATE TABLE IF NOT EXISTS `guild_actions` (
  `event_id` STRING,
  `timestamp` TIMESTAMP,
  `event_type` STRING,
  `plugin_version` STRING,
  `host` STRING,
  `user_agent` STRING,
  `accept` STRING,
  `user_id` STRING,
  `game_id` STRING,
  `client_ts` TIMESTAMP,
  `event_ts` TIMESTAMP,
  `action` STRING,
  `raw_event` STRING,
  `source_partition` INT,
  `source_offset` BIGINT,
  `dt` STRING
)
USING parquet
OPTIONS ('mergeSchema' 'true')
PARTITIONED BY (`dt`)
LOCATION 'file://<WAREHOUSE>/guild_actions';

CREATE TABLE IF NOT EXISTS `horse_purchases` (
  `event_id` STRING,
  `timestamp` TIMESTAMP,
  `event_type` STRING,
  `plugin_version` STRING,
  `host` STRING,
  `user_agent` STRING,
  `accept` STRING,
  `user_id` STRING,
  `game_id` STRING,
  `client_ts` TIMESTAMP,
  `event_ts` TIMESTAMP,
  `speed` DOUBLE,
  `size` STRING,
  `quantity` BIGINT,
  `raw_event` STRING,
  `source_partition` INT,
  `source_offset` BIGINT,
  `dt` STRING
)
USING parquet
OPTIONS ('mergeSchema' 'true')
PARTITIONED BY (`dt`)
LOCATION 'file://<WAREHOUSE>/horse_purchases';

CREATE TABLE IF NOT EXISTS `sword_purchases` (
  `event_id` STRING,
  `timestamp` TIMESTAMP,
  `event_type` STRING,
  `plugin_version` STRING,
  `host` STRING,
  `user_agent` STRING,
  `accept` STRING,
  `user_id` STRING,
  `game_id` STRING,
  `client_ts` TIMESTAMP,
  `event_ts` TIMESTAMP,
  `color` STRING,
  `quantity` BIGINT,
  `raw_event` STRING,
  `source_partition` INT,
  `source_offset` BIGINT,
  `dt` STRING
)
USING parquet
OPTIONS ('mergeSchema' 'true')
PARTITIONED BY (`dt`)
LOCATION 'file://<WAREHOUSE>/sword_purchases';
