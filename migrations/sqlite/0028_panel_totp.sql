-- Optional TOTP for the panel's staff: the secret sealed with the master
-- key (an app must be able to compute the same codes, so it can't be
-- hashed); a secret being set up waits in totp_pending until a code from
-- it is confirmed; totp_last_step makes each code good once.
ALTER TABLE panel_staff ADD COLUMN totp_secret text;
ALTER TABLE panel_staff ADD COLUMN totp_pending text;
ALTER TABLE panel_staff ADD COLUMN totp_last_step bigint;
