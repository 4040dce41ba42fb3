-- Twin of migrations/postgres/0007_domain_data_jsonb.sql, which makes
-- domain_objects.data jsonb there. SQLite has no jsonb column to change to:
-- data stays TEXT, which SQLite's JSON functions read as it is
-- (`data ->> '$.status'`). New writes are rewritten on both backends alike
-- (src/store/domain_data.rs); rows written before are left as they are,
-- since SQLite can hold them.
SELECT 1;
