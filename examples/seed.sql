-- Deterministic seed data for examples/schema.sql (no random(): every run gives the same rows).
-- Re-running replaces the data. Run after schema.sql.
--
-- The "Tailored Audiences" scenario: advertisers upload lists of phone numbers and emails.
-- Some entries match users' marketing phone/email (given for advertising: matching them is
-- allowed), others match only phone numbers users gave for two-factor authentication
-- (collected for security: matching them for advertising is what the policy forbids).

BEGIN;

TRUNCATE ad_impressions, advertiser_list_entries, advertiser_lists, advertisers,
         follows, posts, login_events, users
    RESTART IDENTITY;

-- 1000 users. Phones and emails are fake and distinct:
--   2FA phone        +31 61 nnnnnnn  for 2 users in 3
--   marketing phone  +31 62 nnnnnnn  for 1 user in 5; for 1 user in 10 it is the 2FA number
--   login email      userN@login.example.com, marketing email userN@mail.example.org (1 in 4)
INSERT INTO users (handle, display_name, country, birth_year, created_at, email_login,
                   phone_2fa, password_hash, marketing_email, marketing_phone,
                   ads_opt_in, discoverable)
SELECT 'user' || lpad(g::text, 4, '0'),
       'User ' || g,
       (ARRAY['NL', 'BE', 'DE', 'FR', 'US', 'GB', 'ES', 'IT'])[1 + g % 8],
       1950 + g % 55,
       timestamptz '2023-01-01 00:00:00+00' + g * interval '7 hours 13 minutes',
       'user' || g || '@login.example.com',
       CASE WHEN g % 3 <> 0 THEN '+3161' || lpad(g::text, 7, '0') END,
       'scram-sha-256$fake$' || md5('password-' || g),
       CASE WHEN g % 4 = 0 THEN 'user' || g || '@mail.example.org' END,
       CASE
           WHEN g % 10 = 0 AND g % 3 <> 0 THEN '+3161' || lpad(g::text, 7, '0')
           WHEN g % 5 = 0 THEN '+3162' || lpad(g::text, 7, '0')
       END,
       g % 2 = 0,
       g % 3 = 1
  FROM generate_series(1, 1000) AS g;

-- 5000 login attempts, one in eleven failed.
INSERT INTO login_events (user_id, at, ip, user_agent, success)
SELECT 1 + (g * 7) % 1000,
       timestamptz '2024-01-01 00:00:00+00' + g * interval '17 minutes',
       ('10.' || (g / 65536) % 256 || '.' || (g / 256) % 256 || '.' || g % 256)::inet,
       (ARRAY['Mozilla/5.0 (X11; Linux x86_64)', 'Mozilla/5.0 (iPhone)', 'okhttp/4.12'])[1 + g % 3],
       g % 11 <> 0
  FROM generate_series(1, 5000) AS g;

INSERT INTO posts (user_id, body, created_at)
SELECT 1 + (g * 13) % 1000,
       'Post number ' || g || ' about ' || (ARRAY['cats', 'football', 'rust', 'postgres', 'cooking'])[1 + g % 5],
       timestamptz '2024-01-01 00:00:00+00' + g * interval '29 minutes'
  FROM generate_series(1, 3000) AS g;

-- Each user follows up to 5 others.
INSERT INTO follows (follower_id, followee_id, created_at)
SELECT DISTINCT u, 1 + (u * 31 + k * 97) % 1000, timestamptz '2024-02-01 00:00:00+00' + k * interval '1 day'
  FROM generate_series(1, 1000) AS u, generate_series(1, 5) AS k
 WHERE 1 + (u * 31 + k * 97) % 1000 <> u
ON CONFLICT DO NOTHING;

INSERT INTO advertisers (name)
SELECT 'Advertiser ' || chr(64 + g) FROM generate_series(1, 10) AS g;

INSERT INTO advertiser_lists (advertiser_id, name, uploaded_at)
SELECT 1 + (g - 1) / 2, 'Audience ' || g, timestamptz '2024-03-01 00:00:00+00' + g * interval '1 hour'
  FROM generate_series(1, 20) AS g;

-- List entries: phones matching marketing phones, phones matching only 2FA phones,
-- marketing emails, login emails, and numbers that match nobody.
INSERT INTO advertiser_list_entries (list_id, phone, email)
SELECT 1 + g % 20, marketing_phone, NULL
  FROM (SELECT id AS g, marketing_phone FROM users WHERE marketing_phone IS NOT NULL) AS m
UNION ALL
SELECT 1 + g % 20, phone_2fa, NULL
  FROM (SELECT id AS g, phone_2fa FROM users WHERE id % 7 = 0 AND phone_2fa IS NOT NULL) AS s
UNION ALL
SELECT 1 + g % 20, NULL, marketing_email
  FROM (SELECT id AS g, marketing_email FROM users WHERE id % 8 = 0) AS e
UNION ALL
SELECT 1 + g % 20, NULL, email_login
  FROM (SELECT id AS g, email_login FROM users WHERE id % 9 = 0) AS l
UNION ALL
SELECT 1 + g % 20, '+3169' || lpad(g::text, 7, '0'), NULL
  FROM generate_series(1, 200) AS g;

INSERT INTO ad_impressions (user_id, advertiser_id, shown_at, clicked)
SELECT 1 + (g * 17) % 1000,
       1 + g % 10,
       timestamptz '2024-03-02 00:00:00+00' + g * interval '3 minutes',
       g % 23 = 0
  FROM generate_series(1, 5000) AS g;

COMMIT;

-- Fill pg_stats (which then holds sample values of phone_2fa: the proxy must protect it).
ANALYZE;
