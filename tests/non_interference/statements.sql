-- Statements ads-service sends in the non-interference test (tests/non_interference.rs).
-- Each is run through the proxy against copies of the example that differ only in the
-- values of security-tagged columns; every answer must be identical. Format: see
-- tests/non_interference/runner.rs (an entry ends with a line ending in `;`; a line
-- `--@ extended [binary] [params: a, b | c, d]` sends the next entry with the extended
-- protocol). Statements must be deterministic (no now(), random(), pids, timings): the test
-- also runs them against two identical copies and fails on any difference there.
-- (Cumulative statistics views such as pg_stat_user_tables are flushed asynchronously and do
-- not qualify.)

-- ---------------------------------------------------------------- allowed: ads' own work
SELECT count(*) FROM users;
SELECT id, handle, display_name, country, birth_year, created_at FROM users ORDER BY id LIMIT 60;
SELECT country, count(*), min(birth_year), max(birth_year) FROM users GROUP BY country ORDER BY country;
SELECT id, marketing_email, marketing_phone FROM users WHERE marketing_phone IS NOT NULL ORDER BY id;
SELECT id, marketing_email FROM users WHERE marketing_email LIKE '%@mail.example.org' ORDER BY id LIMIT 40;
SELECT count(*) FILTER (WHERE marketing_email IS NOT NULL), count(*) FILTER (WHERE marketing_phone IS NOT NULL) FROM users;
SELECT u.id, count(i.id) AS impressions, sum(i.clicked::int) AS clicks FROM users u JOIN ad_impressions i ON i.user_id = u.id GROUP BY u.id ORDER BY u.id LIMIT 100;
SELECT advertiser_id, count(*), sum(clicked::int) FROM ad_impressions GROUP BY advertiser_id ORDER BY 1;
SELECT e.list_id, count(*), count(e.phone), count(e.email) FROM advertiser_list_entries e GROUP BY e.list_id ORDER BY 1;
SELECT * FROM advertisers ORDER BY id;
SELECT * FROM advertiser_lists ORDER BY id;
SELECT l.name, a.name FROM advertiser_lists l JOIN advertisers a ON a.id = l.advertiser_id ORDER BY l.id;
SELECT * FROM advertiser_list_entries ORDER BY list_id, phone, email LIMIT 80;
SELECT u.id, e.list_id FROM users u JOIN advertiser_list_entries e ON e.phone = u.marketing_phone ORDER BY u.id, e.list_id;
SELECT u.id, e.list_id FROM users u JOIN advertiser_list_entries e ON lower(e.email) = lower(u.marketing_email) ORDER BY u.id, e.list_id;
SELECT count(*) FROM users u WHERE EXISTS (SELECT 1 FROM advertiser_list_entries e WHERE e.phone = u.marketing_phone);
SELECT id FROM users WHERE marketing_phone IN (SELECT phone FROM advertiser_list_entries) ORDER BY id;
SELECT phone FROM advertiser_list_entries INTERSECT SELECT marketing_phone FROM users ORDER BY 1;
SELECT phone FROM advertiser_list_entries EXCEPT SELECT marketing_phone FROM users ORDER BY 1 LIMIT 30;
WITH reach AS (SELECT i.advertiser_id, count(DISTINCT i.user_id) AS users FROM ad_impressions i GROUP BY 1) SELECT a.name, r.users FROM reach r JOIN advertisers a ON a.id = r.advertiser_id ORDER BY a.id;
SELECT a.name, x.n FROM advertisers a, LATERAL (SELECT count(*) AS n FROM ad_impressions i JOIN users u ON u.id = i.user_id WHERE i.advertiser_id = a.id AND u.country = 'NL') x ORDER BY a.id;
SELECT id, country, rank() OVER (PARTITION BY country ORDER BY birth_year, id) FROM users ORDER BY id LIMIT 40;
SELECT country, birth_year, count(*) FROM users GROUP BY ROLLUP (country, birth_year) ORDER BY 1, 2 LIMIT 50;
SELECT DISTINCT country FROM users ORDER BY 1;
SELECT DISTINCT ON (country) country, id, handle FROM users ORDER BY country, id;
SELECT CASE WHEN marketing_phone IS NULL THEN 'none' ELSE 'some' END AS kind, count(*) FROM users GROUP BY 1 ORDER BY 1;
SELECT string_agg(handle, ',' ORDER BY id) FROM users WHERE id < 40;
SELECT array_agg(id ORDER BY id) FROM users WHERE country = 'NL' AND id < 200;
SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY birth_year) FROM users;
SELECT md5(string_agg(marketing_email, ',' ORDER BY id)) FROM users;
SELECT avg(length(marketing_email)), max(length(handle)) FROM users;
SELECT p.id, p.body FROM posts p JOIN users u ON u.id = p.user_id WHERE u.country = 'DE' ORDER BY p.id LIMIT 30;
SELECT count(*) FROM follows f JOIN users a ON a.id = f.follower_id JOIN users b ON b.id = f.followee_id;
SELECT count(*) FROM posts WHERE user_id IN (SELECT id FROM users);
SELECT count(*) FROM posts p WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = p.user_id);
SELECT handle FROM users UNION ALL SELECT name FROM advertisers ORDER BY 1 LIMIT 30;
SELECT * FROM user_profiles ORDER BY id LIMIT 40;
SELECT country, count(*) FROM user_profiles GROUP BY country ORDER BY 1;
SELECT v.handle, count(p.id) FROM user_profiles v LEFT JOIN posts p ON p.user_id = v.id GROUP BY v.handle ORDER BY 2 DESC, 1 LIMIT 20;
SELECT u.id, i.shown_at FROM users u JOIN ad_impressions i ON i.user_id = u.id WHERE i.clicked ORDER BY i.id LIMIT 50;
SELECT id FROM users WHERE id = 1;
SELECT id, handle FROM users WHERE handle = 'user0002';
SELECT 1 AS one, 'text' AS t, NULL::int AS n;
VALUES (1, 'a'), (2, 'b');
SELECT current_user, session_user, current_database();
SHOW search_path;
SELECT count(*) FROM users HAVING count(*) > 0;
SELECT id FROM users ORDER BY id DESC LIMIT 5 OFFSET 10;
SELECT id, handle FROM users WHERE id = 2 FOR UPDATE;

-- ---------------------------------------------------------------- rewritten: masks
SELECT * FROM users ORDER BY id LIMIT 100;
SELECT id, phone_2fa, email_login, password_hash FROM users ORDER BY id;
SELECT id, "phone_2fa", users.email_login, u2.password_hash FROM users JOIN users u2 USING (id) ORDER BY id LIMIT 20;
SELECT u.phone_2fa AS p, u.id FROM users u ORDER BY u.id LIMIT 20;
SELECT PHONE_2FA, ID FROM USERS ORDER BY ID LIMIT 10;
SELECT * FROM login_events LIMIT 20;
SELECT l.ip, l.at, l.success FROM login_events l LIMIT 10;
SELECT * FROM user_security_contacts ORDER BY id LIMIT 30;
SELECT c.id, c.phone_2fa FROM user_security_contacts c ORDER BY c.id LIMIT 15;
SELECT p.*, u.* FROM posts p JOIN users u ON u.id = p.user_id ORDER BY p.id LIMIT 25;
SELECT s.phone_2fa FROM (SELECT id, phone_2fa FROM users) s WHERE s.id > 990 ORDER BY s.id;
WITH x AS (SELECT id, email_login, phone_2fa FROM users) SELECT * FROM x ORDER BY id LIMIT 10;
WITH x(a, b) AS (SELECT id, phone_2fa FROM users) SELECT a, b FROM x ORDER BY a LIMIT 10;
SELECT p.id, u.email_login FROM posts p LEFT JOIN users u ON u.id = p.user_id ORDER BY p.id LIMIT 20;
SELECT id, phone_2fa FROM users ORDER BY id LIMIT 10; SELECT id, email_login FROM users WHERE id = 2;
SELECT * FROM users WHERE id = 14;
SELECT attname, most_common_vals, histogram_bounds FROM pg_stats;
SELECT * FROM pg_stats;
SELECT s.* FROM pg_catalog.pg_stats s;
SELECT null_frac, avg_width, n_distinct, correlation FROM pg_stats;
SELECT count(*) FROM pg_stats;

-- ---------------------------------------------------------------- refused: forbidden uses
SELECT id FROM users WHERE phone_2fa = '+31610000007';
SELECT id FROM users WHERE phone_2fa IS NOT NULL ORDER BY id;
SELECT count(*) FROM users WHERE phone_2fa IS NULL;
SELECT count(phone_2fa), count(email_login) FROM users;
SELECT count(DISTINCT email_login) FROM users;
SELECT country FROM users GROUP BY country HAVING max(email_login) > 'a';
SELECT count(*) FROM users GROUP BY phone_2fa;
SELECT id FROM users ORDER BY phone_2fa LIMIT 10;
SELECT id, phone_2fa FROM users ORDER BY 2 LIMIT 10;
SELECT phone_2fa AS p FROM users ORDER BY p LIMIT 5;
SELECT DISTINCT phone_2fa FROM users;
SELECT DISTINCT ON (phone_2fa) id FROM users;
SELECT lower(email_login) FROM users;
SELECT phone_2fa || '' FROM users;
SELECT phone_2fa::text FROM users;
SELECT (phone_2fa) FROM users;
SELECT CASE WHEN phone_2fa LIKE '+3161%' THEN 'nl' ELSE 'other' END FROM users;
SELECT count(*) FILTER (WHERE phone_2fa IS NULL) FROM users;
SELECT id, rank() OVER (PARTITION BY phone_2fa ORDER BY id) FROM users;
SELECT id, rank() OVER w FROM users WINDOW w AS (ORDER BY email_login);
SELECT id FROM users LIMIT (SELECT length(phone_2fa) FROM users WHERE phone_2fa IS NOT NULL LIMIT 1);
SELECT (SELECT phone_2fa FROM users u2 WHERE u2.id = u.id) FROM users u;
SELECT id FROM users u WHERE (SELECT count(*) FROM posts p WHERE p.body = u.email_login) > 0;
SELECT count(*) FROM login_events WHERE success;
SELECT user_id, count(*) FROM login_events GROUP BY user_id ORDER BY 2 DESC LIMIT 5;
SELECT u.id FROM users u JOIN login_events l ON l.user_id = u.id WHERE l.ip << '10.0.0.0/24'::inet;
SELECT u FROM users u;
SELECT row_to_json(u) FROM users u;
SELECT to_jsonb(u.*) FROM users u;
SELECT (u).phone_2fa FROM users u;
SELECT 1 FROM users u WHERE u IS NOT NULL;
SELECT count(u.*) FROM users u;
SELECT ARRAY[phone_2fa] FROM users;
SELECT ARRAY(SELECT phone_2fa FROM users);
SELECT string_agg(email_login, ',') FROM users;
SELECT array_agg(id ORDER BY phone_2fa) FROM users;
SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY email_login) FROM users;
SELECT id FROM users WHERE phone_2fa BETWEEN '+31' AND '+32';
SELECT id FROM users WHERE email_login IN ('user1@login.example.com', 'user2@login.example.com');
SELECT id FROM users WHERE email_login ILIKE '%@login.example.com';
SELECT substring(phone_2fa FROM 1 FOR 3) FROM users;
SELECT coalesce(phone_2fa, '') FROM users;
SELECT phone_2fa FROM users UNION SELECT body FROM posts;
SELECT phone_2fa FROM users UNION ALL SELECT body FROM posts;
SELECT pg_column_size(phone_2fa) FROM users;
SELECT sum(pg_column_size(u.*)) FROM users u;
SELECT length(password_hash) FROM users;
SELECT id FROM users WHERE password_hash LIKE 'scram%' LIMIT 1;
SELECT id FROM users WHERE U&"phone\005f2fa" IS NOT NULL;
SELECT id FROM users WHERE "PHONE_2FA" IS NOT NULL;
SELECT nope FROM users;
SELECT id FROM no_such_table;
TABLE users;
SELECT * FROM users u, json_populate_record(NULL::users, '{}') r;
SELECT id FROM users TABLESAMPLE SYSTEM (50) REPEATABLE (1);
SELECT histogram_bounds FROM pg_stats WHERE tablename = 'users' AND attname = 'phone_2fa';
SELECT count(*) FROM pg_stats WHERE histogram_bounds::text LIKE '%+3161%';
SELECT array_to_string(most_common_vals, ',') FROM pg_stats;
SELECT stavalues1 FROM pg_statistic;
SELECT pid FROM pg_stat_activity WHERE query LIKE '%phone%';
SELECT query_to_xml('SELECT phone_2fa FROM users', true, false, '');
SELECT table_to_xml('users', true, false, '');
SELECT * FROM ts_stat('SELECT to_tsvector(email_login) FROM users');
SELECT word FROM ts_stat('SELECT to_tsvector(email_login) FROM users');
SELECT set_config('search_path', 'pg_temp, public', false);
SET search_path = pg_temp, public;
SET ROLE app_auth;
SET SESSION AUTHORIZATION app_auth;
DO $$ BEGIN PERFORM phone_2fa FROM users; END $$;
CREATE TEMP VIEW v AS SELECT phone_2fa FROM users;
CREATE FUNCTION leak() RETURNS SETOF text LANGUAGE sql AS 'SELECT phone_2fa FROM users';
ALTER TABLE users RENAME COLUMN phone_2fa TO phone;
SET standard_conforming_strings = off;

-- ---------------------------------------------------------------- refused: less common spellings
SELECT count(*) FROM users u WHERE EXISTS (SELECT generate_series(1, CASE WHEN u.phone_2fa LIKE '+3161%' THEN 1 ELSE 0 END));
SELECT count(*) FROM users u WHERE EXISTS (SELECT rank() OVER (ORDER BY u.phone_2fa::int));
SELECT count(*) FROM users u WHERE EXISTS (SELECT 1 HAVING count(u.phone_2fa) > 0);
SELECT count(*) FROM users u WHERE EXISTS (SELECT 1 FROM (SELECT u.phone_2fa AS p) x WHERE x.p LIKE '+3161%');
SELECT count(*) FROM users u WHERE EXISTS (SELECT u.phone_2fa INTERSECT SELECT '+31610000002');
SELECT count(*) FROM users u WHERE u.handle IN (SELECT u.phone_2fa);
SELECT count(*) FROM users u, LATERAL (SELECT u.phone_2fa AS p) x WHERE x.p LIKE '+3161%';
SELECT count(*) FROM users AS u(a, b, c, d, e, f, g, h) WHERE h IS NULL;
SELECT count(*) FROM users u WHERE phone_2fa(u) IS NULL;
SELECT count(*) FROM users NATURAL JOIN user_security_contacts;
SELECT count(*) FROM users JOIN user_security_contacts USING (id, phone_2fa);
SELECT count(*) FROM users u JOIN user_security_contacts c ON c.email_login = u.email_login;
SELECT id FROM (SELECT * FROM public.users WHERE (ads_opt_in)) AS u WHERE u.phone_2fa IS NULL;
SELECT count(*) FROM users u WHERE (u.id, u.phone_2fa) = (7, '+31610000007');
SELECT count(*) FROM users WHERE phone_2fa = ANY (ARRAY['+31610000002', '+31610000004']);
SELECT count(*) FROM users WHERE phone_2fa ~~ '+3161%';
SELECT count(*) FROM users WHERE phone_2fa/* comment */IS NULL;
SELECT $$x$$ || phone_2fa FROM users;
SELECT jsonb_path_query(to_jsonb(u), '$.phone_2fa') FROM users u;
SELECT x.key, x.value FROM users u, LATERAL jsonb_each_text(to_jsonb(u)) x;
SELECT json_agg(u) FROM users u;
SELECT format('%s', u.*) FROM users u;
SELECT count(users) FROM users;
SELECT DISTINCT u.* FROM users u;
SELECT * FROM users UNION SELECT * FROM users;
SELECT * FROM unnest(ARRAY(SELECT phone_2fa FROM users));
SELECT * FROM generate_series(1, (SELECT count(phone_2fa) FROM users)::int);
VALUES ((SELECT phone_2fa FROM users WHERE id = 2));
WITH u AS MATERIALIZED (SELECT * FROM users) SELECT id FROM u WHERE phone_2fa IS NULL;
SELECT country, count(*) FROM users GROUP BY GROUPING SETS ((country), (phone_2fa));
SELECT count(*) FROM users WHERE CASE WHEN false THEN phone_2fa END IS NULL;
SELECT id FROM users ORDER BY 1, phone_2fa NULLS FIRST LIMIT 5;
SELECT id FROM users ORDER BY users LIMIT 5;
PREPARE p2 AS SELECT $1::text = phone_2fa FROM users;
MERGE INTO advertiser_list_entries e USING users u ON e.phone = u.phone_2fa WHEN MATCHED THEN DELETE;
INSERT INTO users (id, handle, email_login) VALUES (2, 'x', 'y') ON CONFLICT (id) DO UPDATE SET display_name = EXCLUDED.display_name RETURNING phone_2fa;
UPDATE users SET display_name = phone_2fa WHERE id = 2 RETURNING display_name;
UPDATE users SET display_name = display_name WHERE phone_2fa IS NULL;
SELECT * FROM ONLY users;
SELECT "public"."users"."phone_2fa" FROM "public"."users" ORDER BY "public"."users"."id" LIMIT 3;
SELECT g, h FROM users AS u(a, b, c, d, e, f, g, h) ORDER BY a LIMIT 5;
SELECT count(*) FROM users u WHERE EXISTS (SELECT u.phone_2fa);
SELECT count(*) FROM users u WHERE EXISTS (SELECT u.phone_2fa, count(*));
SELECT count(*) FROM (SELECT * FROM public.users WHERE (ads_opt_in) OR true) u;
ANALYZE users;
VACUUM users;

-- ---------------------------------------------------------------- refused: Tailored Audiences
SELECT u.id FROM users u JOIN advertiser_list_entries e ON e.phone = u.phone_2fa;
SELECT e.list_id FROM public.advertiser_list_entries e INNER JOIN public.users ON public.users.phone_2fa = e.phone;
SELECT e.list_id, u.id FROM advertiser_list_entries e LEFT JOIN users u ON u.email_login = e.email;
SELECT u.id FROM users u JOIN (SELECT phone AS phone_2fa FROM advertiser_list_entries) e USING (phone_2fa);
SELECT id FROM (SELECT id, phone_2fa FROM users) u NATURAL JOIN (SELECT phone AS phone_2fa FROM advertiser_list_entries) e;
SELECT u.id FROM users u, advertiser_list_entries e WHERE e.phone = u.phone_2fa;
SELECT id FROM users WHERE phone_2fa IN (SELECT phone FROM advertiser_list_entries);
SELECT id FROM users u WHERE EXISTS (SELECT 1 FROM advertiser_list_entries e WHERE e.phone = u.phone_2fa);
SELECT count(*) FROM advertiser_list_entries e WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.email_login = e.email);
SELECT phone FROM advertiser_list_entries INTERSECT SELECT phone_2fa FROM users;
SELECT phone FROM advertiser_list_entries EXCEPT SELECT phone_2fa FROM users;
SELECT count(*) FROM (SELECT phone FROM advertiser_list_entries UNION SELECT phone_2fa FROM users) x;
SELECT e.phone, (SELECT u.id FROM users u WHERE u.phone_2fa = e.phone) FROM advertiser_list_entries e;
WITH phones AS (SELECT id, phone_2fa FROM users) SELECT p.id FROM phones p JOIN advertiser_list_entries e ON e.phone = p.phone_2fa;
WITH phones(uid, ph) AS (SELECT id, phone_2fa FROM users) SELECT uid FROM phones JOIN advertiser_list_entries ON phone = ph;
WITH RECURSIVE r(n, ph) AS (SELECT 1, phone_2fa FROM users WHERE id = 7 UNION ALL SELECT n + 1, ph FROM r WHERE n < 2) SELECT n FROM r;
SELECT e.list_id, m.id FROM advertiser_list_entries e, LATERAL (SELECT id FROM users u WHERE u.phone_2fa = e.phone) m;
SELECT c.id FROM user_security_contacts c JOIN advertiser_list_entries e ON e.phone = c.phone_2fa;
SELECT c.i FROM user_security_contacts AS c(i, h, m, p) JOIN advertiser_list_entries e ON e.email = c.m;
SELECT id, count(*) OVER (PARTITION BY phone_2fa) FROM users;
SELECT u.id, rank() OVER (ORDER BY u.phone_2fa IN (SELECT phone FROM advertiser_list_entries) DESC, u.id) FROM users u LIMIT 20;
SELECT u.id FROM users u ORDER BY u.phone_2fa IN (SELECT phone FROM advertiser_list_entries) DESC, u.id LIMIT 20;
SELECT u.phone_2fa IN (SELECT phone FROM advertiser_list_entries) AS matched, count(*) FROM users u GROUP BY 1;
SELECT id, CASE WHEN phone_2fa IN (SELECT phone FROM advertiser_list_entries) THEN 1 ELSE 0 END FROM users;
SELECT md5(phone_2fa) FROM users;
SELECT u.id FROM users u JOIN advertiser_list_entries e ON md5(e.phone) = md5(u.phone_2fa);
SELECT u.id FROM users u JOIN advertiser_list_entries e ON e.phone::text = u.phone_2fa::text;
SELECT u.id FROM users u JOIN advertiser_list_entries e ON row_to_json(u)::text LIKE '%' || e.phone || '%';
SELECT u.id FROM users u WHERE u::text LIKE '%+316%';
SELECT to_jsonb(u) ->> 'phone_2fa' FROM users u;
SELECT U.ID FROM USERS U JOIN ADVERTISER_LIST_ENTRIES E ON E.PHONE = U."phone_2fa";
SELECT u.id FROM users u JOIN advertiser_list_entries e ON lower(e.email) = lower(u.email_login);
SELECT count(*) FILTER (WHERE u.phone_2fa IN (SELECT phone FROM advertiser_list_entries)) FROM users u;
PREPARE match(text) AS SELECT id FROM users WHERE phone_2fa = $1;
EXECUTE match('+31610000007');
PREPARE m2 AS SELECT u.id FROM users u JOIN advertiser_list_entries e ON e.phone = u.phone_2fa; EXECUTE m2;
EXPLAIN SELECT id FROM users WHERE phone_2fa = '+31610000007';
EXPLAIN ANALYZE SELECT u.id FROM users u JOIN advertiser_list_entries e ON e.phone = u.phone_2fa;
EXPLAIN (ANALYZE, TIMING OFF, SUMMARY OFF) SELECT count(*) FROM users WHERE phone_2fa IS NOT NULL;
DECLARE c CURSOR FOR SELECT u.id FROM users u JOIN advertiser_list_entries e ON e.phone = u.phone_2fa;
BEGIN; DECLARE c CURSOR FOR SELECT u.id FROM users u JOIN advertiser_list_entries e ON e.phone = u.phone_2fa; FETCH ALL FROM c; COMMIT;
COPY (SELECT u.id FROM users u JOIN advertiser_list_entries e ON e.phone = u.phone_2fa) TO STDOUT;
INSERT INTO advertiser_list_entries (list_id, phone) SELECT 1, phone_2fa FROM users;
UPDATE advertiser_list_entries e SET list_id = 2 FROM users u WHERE u.phone_2fa = e.phone;
DELETE FROM advertiser_list_entries e USING users u WHERE u.phone_2fa = e.phone;
UPDATE users SET marketing_phone = phone_2fa WHERE id = 2;
UPDATE users SET phone_2fa = NULL WHERE id = 2;
BEGIN; SELECT count(*) FROM advertisers; SELECT id FROM users WHERE phone_2fa = '+31610000014'; COMMIT;

-- ---------------------------------------------------------------- EXPLAIN
EXPLAIN SELECT count(*) FROM users;
EXPLAIN SELECT * FROM users WHERE country = 'NL';
EXPLAIN SELECT id, phone_2fa FROM users ORDER BY id;
EXPLAIN (VERBOSE) SELECT * FROM users;
EXPLAIN (VERBOSE, COSTS) SELECT * FROM user_security_contacts;
EXPLAIN (FORMAT JSON) SELECT u.id FROM users u JOIN advertiser_list_entries e ON e.phone = u.marketing_phone;
EXPLAIN (FORMAT YAML) SELECT country, count(*) FROM users GROUP BY country;
EXPLAIN SELECT * FROM users WHERE handle = 'user0002';
EXPLAIN SELECT * FROM login_events;
EXPLAIN SELECT count(*) FROM users u JOIN ad_impressions i ON i.user_id = u.id WHERE u.birth_year > 1980;
EXPLAIN SELECT id FROM users WHERE marketing_email IS NOT NULL AND marketing_phone IS NULL;
EXPLAIN (ANALYZE, TIMING OFF, SUMMARY OFF) SELECT count(*) FROM users;
EXPLAIN (ANALYZE, TIMING OFF, SUMMARY OFF) SELECT * FROM users ORDER BY id LIMIT 10;
EXPLAIN (ANALYZE, TIMING OFF, SUMMARY OFF, VERBOSE) SELECT id, phone_2fa, email_login FROM users WHERE country = 'DE';
EXPLAIN (ANALYZE, TIMING OFF, SUMMARY OFF) SELECT u.id FROM users u JOIN advertiser_list_entries e ON e.phone = u.marketing_phone;
EXPLAIN (ANALYZE, TIMING OFF, SUMMARY OFF, COSTS OFF) SELECT * FROM login_events LIMIT 5;
EXPLAIN (ANALYZE, TIMING OFF, SUMMARY OFF) SELECT * FROM user_security_contacts WHERE id < 100;

-- ---------------------------------------------------------------- cursors
BEGIN; DECLARE c CURSOR FOR SELECT id, handle, phone_2fa FROM users ORDER BY id; FETCH 5 FROM c; MOVE 10 IN c; FETCH 5 FROM c; CLOSE c; COMMIT;
DECLARE h CURSOR WITH HOLD FOR SELECT * FROM users ORDER BY id;
FETCH 3 FROM h;
FETCH ABSOLUTE 50 FROM h;
CLOSE h;
BEGIN; DECLARE s SCROLL CURSOR FOR SELECT * FROM login_events; FETCH LAST FROM s; FETCH PRIOR FROM s; COMMIT;
SELECT cursor_to_xml('h', 10, true, false, '');

-- ---------------------------------------------------------------- prepared statements
PREPARE ok(bigint) AS SELECT handle, phone_2fa, marketing_email FROM users WHERE id = $1;
EXECUTE ok(2);
EXECUTE ok(7);
EXECUTE ok(14);
DEALLOCATE ok;
--@ extended params: NL, 10 | DE, 5 | ES, 3 | FR, 3
SELECT id, handle, phone_2fa, marketing_email FROM users WHERE country = $1 ORDER BY id LIMIT $2;
--@ extended binary params: 2 | 4 | 6 | 7 | 14
SELECT * FROM users WHERE id = $1;
--@ extended binary
SELECT * FROM login_events LIMIT 3;
--@ extended params: 1980
SELECT count(*), min(id) FROM users WHERE birth_year > $1;
--@ extended params: +31610000014
SELECT id FROM users WHERE marketing_phone = $1;
--@ extended params: +31610000007 | +31610000014
SELECT id FROM users WHERE phone_2fa = $1;
--@ extended params: %login%
SELECT id FROM users WHERE email_login LIKE $1;
--@ extended binary params: 3
SELECT e.list_id, e.phone, u.id FROM advertiser_list_entries e LEFT JOIN users u ON u.marketing_phone = e.phone WHERE e.list_id = $1 ORDER BY 1, 2, 3;
--@ extended params: 10
SELECT id, email_login FROM user_security_contacts WHERE id <= $1 ORDER BY id;
--@ extended
SELECT u.id FROM users u JOIN advertiser_list_entries e ON e.phone = u.phone_2fa;
--@ extended
COPY users (id, phone_2fa) TO STDOUT;
--@ extended params: abc
SELECT $1::int;

-- ---------------------------------------------------------------- COPY
COPY users TO STDOUT;
COPY users (id, phone_2fa, marketing_phone) TO STDOUT WITH (FORMAT csv, HEADER);
COPY public.users (id, email_login, password_hash) TO STDOUT (FORMAT binary);
COPY (SELECT phone_2fa FROM users) TO STDOUT;
COPY (SELECT * FROM users ORDER BY id) TO STDOUT WITH (FORMAT csv);
COPY login_events TO STDOUT;
COPY login_events (ip, at) TO STDOUT (FORMAT csv);
COPY advertiser_list_entries TO STDOUT;
COPY (SELECT id FROM users WHERE phone_2fa IS NOT NULL) TO STDOUT;
COPY (SELECT md5(phone_2fa) FROM users) TO STDOUT;
COPY user_security_contacts TO STDOUT;
COPY advertiser_list_entries (list_id, phone) FROM STDIN;
COPY users (handle, email_login) FROM STDIN;
COPY users TO '/tmp/users.csv';
COPY users TO PROGRAM 'cat';

-- ---------------------------------------------------------------- writes (rolled back)
BEGIN; INSERT INTO ad_impressions (user_id, advertiser_id, shown_at) VALUES (2, 1, '2024-01-01 00:00:00+00') RETURNING id, user_id; ROLLBACK;
BEGIN; UPDATE users SET marketing_email = marketing_email WHERE id < 20 RETURNING id, marketing_email; ROLLBACK;
BEGIN; UPDATE users SET display_name = 'x' WHERE id < 20 RETURNING *; ROLLBACK;
BEGIN; DELETE FROM advertiser_list_entries WHERE phone IN (SELECT marketing_phone FROM users); ROLLBACK;
BEGIN; DELETE FROM users WHERE id = 2 RETURNING phone_2fa; ROLLBACK;
BEGIN; INSERT INTO advertiser_list_entries (list_id, phone) VALUES (1, '+31610000007'); SELECT count(*) FROM advertiser_list_entries; ROLLBACK;
BEGIN; UPDATE users SET marketing_phone = NULL WHERE id = 4; SELECT id, marketing_phone, phone_2fa FROM users WHERE id = 4; ROLLBACK;
INSERT INTO users (handle, email_login) VALUES ('newcomer', 'newcomer@login.example.com');
INSERT INTO users (handle, email_login) SELECT handle || 'x', email_login FROM users WHERE id = 2;

-- ---------------------------------------------------------------- errors
SELEC 1;
SELECT 1/0;
SELECT id FROM users WHERE handle::int > 0;
SELECT marketing_phone::bigint FROM users WHERE marketing_phone IS NOT NULL;
SELECT id FROM users WHERE id = 'abc';
SELECT count(*) FROM users WHERE birth_year / (birth_year - 1952) > 0;
BEGIN; SELECT 1/0; COMMIT;
BEGIN; SELECT count(*) FROM users; SELECT 1/0; SELECT 2; COMMIT;
SELECT 'unterminated;
SELECT id FROM users WHERE id IN (SELECT id FROM users WHERE handle = 'user0002') AND 1/(id - 2) = 1;
ROLLBACK;
COMMIT;

-- ---------------------------------------------------------------- catalogs and sizes
SELECT relname, relpages, reltuples FROM pg_class WHERE relname IN ('users', 'login_events', 'users_pkey', 'login_events_pkey') ORDER BY relname;
SELECT pg_relation_size('users'), pg_relation_size('login_events');
SELECT pg_total_relation_size('users'), pg_table_size('login_events'), pg_indexes_size('login_events');
SELECT attname, atttypid::regtype, attnotnull FROM pg_attribute WHERE attrelid = 'users'::regclass AND attnum > 0 ORDER BY attnum;
SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'users' ORDER BY ordinal_position;
SELECT pg_get_viewdef('user_security_contacts'::regclass);
SELECT query FROM pg_stat_activity WHERE false;
