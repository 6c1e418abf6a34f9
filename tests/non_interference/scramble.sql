-- Gives the security-tagged columns of a copy of the example their values for this copy.
-- Every copy runs exactly these statements, in this order, with only the placeholders in braces
-- (expressions) differing, so that the copies share their physical history: the same
-- transaction ids, OIDs and relfilenodes, the same dead tuples before VACUUM FULL compacts
-- them, the same statistics for every other column. Columns changed: users.email_login,
-- users.phone_2fa, users.password_hash and every column of login_events (tagged security).
BEGIN;
UPDATE users SET email_login = {email_login}, phone_2fa = {phone_2fa}, password_hash = {password_hash};
-- login_events.id is a primary key: move the ids out of the way first so that a permutation
-- never collides with a row not yet updated.
UPDATE login_events SET id = -id;
UPDATE login_events SET id = {event_id}, user_id = {event_user_id}, at = {event_at},
       ip = {event_ip}, user_agent = {event_user_agent}, success = {event_success};
COMMIT;
VACUUM FULL users, login_events;
ANALYZE;
