-- Upstream roles the proxy connects as on behalf of the example services (see policies/).
-- Run after schema.sql, as a superuser. Each role's password is its own name: for the
-- quickstart and tests only. Re-running is harmless.
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['app_auth', 'app_ads', 'app_discovery', 'app_analytics', 'app_support']
    LOOP
        IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = r) THEN
            EXECUTE format('ALTER ROLE %I LOGIN PASSWORD %L', r, r);
        ELSE
            EXECUTE format('CREATE ROLE %I LOGIN PASSWORD %L', r, r);
        END IF;
        EXECUTE format('GRANT USAGE ON SCHEMA public TO %I', r);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO %I', r);
        EXECUTE format('GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO %I', r);
    END LOOP;
END
$$;
