-- The admin panel's people and their sessions. Staff belong to one tenant
-- and sign in with an email (unique across the installation) and a
-- password kept as an argon2id hash; until an invitation is accepted the
-- row holds only the SHA-256 of its one-time token. Sessions are kept
-- here, not in a process, so any process serves them: the cookie holds a
-- random token and this table only its SHA-256, with the form token
-- (CSRF) every change must carry.
CREATE TABLE panel_staff (
    staff_id              text    PRIMARY KEY,
    tenant_id             text    NOT NULL,
    email                 text    NOT NULL,
    role                  text    NOT NULL,
    password_hash         text,
    invitation_hash       text,
    invitation_expires_at text,
    created_at            text    NOT NULL
);
CREATE UNIQUE INDEX panel_staff_by_email ON panel_staff (email);
CREATE UNIQUE INDEX panel_staff_by_invitation ON panel_staff (invitation_hash);
CREATE INDEX panel_staff_by_tenant ON panel_staff (tenant_id, email);

CREATE TABLE panel_sessions (
    session_hash  text PRIMARY KEY,
    staff_id      text NOT NULL,
    tenant_id     text NOT NULL,
    csrf          text NOT NULL,
    created_at    text NOT NULL,
    last_seen_at  text NOT NULL
);
CREATE INDEX panel_sessions_by_staff ON panel_sessions (staff_id);
