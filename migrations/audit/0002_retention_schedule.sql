-- Automatic retention: each tenant's chain head remembers when retention last ran for
-- it, so that the event handler archives by itself every retention_every (a setting)
-- without a scheduler. A new head starts at its creation time: the first automatic
-- run comes one interval after a tenant's first record.
ALTER TABLE chain_heads ADD COLUMN retention_checked_at timestamptz NOT NULL DEFAULT now();
