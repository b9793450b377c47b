-- eventsift tables as external, partitioned Parquet tables (Hive)
-- New dt= partitions: a Hive 4 metastore discovers them ('discover.partitions');
-- with an older one, run the MSCK REPAIR TABLE statements again.

CREATE EXTERNAL TABLE IF NOT EXISTS `guild_actions` (
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
  `source_offset` BIGINT
)
PARTITIONED BY (`dt` STRING)
STORED AS PARQUET
LOCATION 'file://<WAREHOUSE>/guild_actions'
TBLPROPERTIES ('discover.partitions' = 'true');
MSCK REPAIR TABLE `guild_actions`;

CREATE EXTERNAL TABLE IF NOT EXISTS `horse_purchases` (
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
  `source_offset` BIGINT
)
PARTITIONED BY (`dt` STRING)
STORED AS PARQUET
LOCATION 'file://<WAREHOUSE>/horse_purchases'
TBLPROPERTIES ('discover.partitions' = 'true');
MSCK REPAIR TABLE `horse_purchases`;

CREATE EXTERNAL TABLE IF NOT EXISTS `sword_purchases` (
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
  `source_offset` BIGINT
)
PARTITIONED BY (`dt` STRING)
STORED AS PARQUET
LOCATION 'file://<WAREHOUSE>/sword_purchases'
TBLPROPERTIES ('discover.partitions' = 'true');
MSCK REPAIR TABLE `sword_purchases`;
