-- Example schema: a small social network. Loaded by the quickstart and by the test harness.
-- Columns collected for security (2FA phone, login email) sit beside columns given for
-- advertising (marketing email and phone). policies/ says which purpose may use which.

CREATE TABLE users (
    id              bigserial PRIMARY KEY,
    handle          text NOT NULL UNIQUE,
    display_name    text,
    country         char(2),
    birth_year      integer,
    created_at      timestamptz NOT NULL DEFAULT now(),
    -- collected for account security
    email_login     text NOT NULL,
    phone_2fa       text,
    password_hash   text,
    -- given by the user for advertising
    marketing_email text,
    marketing_phone text,
    ads_opt_in      boolean NOT NULL DEFAULT false,
    -- contact discovery opt-in
    discoverable    boolean NOT NULL DEFAULT false
);

CREATE TABLE login_events (
    id         bigserial PRIMARY KEY,
    user_id    bigint NOT NULL REFERENCES users(id),
    at         timestamptz NOT NULL DEFAULT now(),
    ip         inet NOT NULL,
    user_agent text,
    success    boolean NOT NULL
);

CREATE TABLE posts (
    id         bigserial PRIMARY KEY,
    user_id    bigint NOT NULL REFERENCES users(id),
    body       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE follows (
    follower_id bigint NOT NULL REFERENCES users(id),
    followee_id bigint NOT NULL REFERENCES users(id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (follower_id, followee_id)
);

CREATE TABLE advertisers (
    id   serial PRIMARY KEY,
    name text NOT NULL
);

-- Lists advertisers upload ("Tailored Audiences"): phone numbers and emails to match.
CREATE TABLE advertiser_lists (
    id            serial PRIMARY KEY,
    advertiser_id integer NOT NULL REFERENCES advertisers(id),
    name          text NOT NULL,
    uploaded_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE advertiser_list_entries (
    list_id integer NOT NULL REFERENCES advertiser_lists(id),
    phone   text,
    email   text
);

CREATE TABLE ad_impressions (
    id            bigserial PRIMARY KEY,
    user_id       bigint NOT NULL REFERENCES users(id),
    advertiser_id integer NOT NULL REFERENCES advertisers(id),
    shown_at      timestamptz NOT NULL DEFAULT now(),
    clicked       boolean NOT NULL DEFAULT false
);

-- A harmless view and one that reaches protected columns: views inherit their columns' tags.
CREATE VIEW user_profiles AS
    SELECT id, handle, display_name, country FROM users;

CREATE VIEW user_security_contacts AS
    SELECT id, handle, email_login, phone_2fa FROM users;
