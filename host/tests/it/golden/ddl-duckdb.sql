-- eventsift tables as external, partitioned Parquet tables (DuckDB)

CREATE OR REPLACE VIEW "guild_actions" AS
  SELECT * FROM read_parquet('<WAREHOUSE>/guild_actions/*/*.parquet',
    hive_partitioning = true, hive_types = {'dt': VARCHAR}, union_by_name = true);

CREATE OR REPLACE VIEW "horse_purchases" AS
  SELECT * FROM read_parquet('<WAREHOUSE>/horse_purchases/*/*.parquet',
    hive_partitioning = true, hive_types = {'dt': VARCHAR}, union_by_name = true);

CREATE OR REPLACE VIEW "sword_purchases" AS
  SELECT * FROM read_parquet('<WAREHOUSE>/sword_purchases/*/*.parquet',
    hive_partitioning = true, hive_types = {'dt': VARCHAR}, union_by_name = true);
