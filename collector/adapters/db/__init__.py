"""The collector's database: schema, engine, stores and migrations."""
