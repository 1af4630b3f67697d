-- retrysafe PostgresStore schema (also: retrysafe store sql). Created on first use
-- or by: retrysafe store init postgresql://...
CREATE TABLE IF NOT EXISTS retrysafe_kv (
    key text PRIMARY KEY,
    value bytea,
    num double precision,
    owner text,
    items text[],
    expires double precision NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS retrysafe_records (
    key text PRIMARY KEY,
    state text NOT NULL,
    fp text NOT NULL,
    owner text,
    fence text NOT NULL,
    nonce text,
    lease double precision NOT NULL,
    payload bytea,
    expires double precision NOT NULL
);
ALTER TABLE retrysafe_records ADD COLUMN IF NOT EXISTS unstarted boolean NOT NULL DEFAULT false;
ALTER TABLE retrysafe_records ADD COLUMN IF NOT EXISTS meta text;
ALTER TABLE retrysafe_records ADD COLUMN IF NOT EXISTS created double precision NOT NULL DEFAULT 0;
ALTER TABLE retrysafe_records ADD COLUMN IF NOT EXISTS updated double precision NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS retrysafe_records_created ON retrysafe_records (created DESC, key DESC);
CREATE INDEX IF NOT EXISTS retrysafe_records_state
    ON retrysafe_records (state, created DESC, key DESC);
CREATE TABLE IF NOT EXISTS retrysafe_fences (key text PRIMARY KEY, counter bigint NOT NULL);
CREATE TABLE IF NOT EXISTS retrysafe_schema (version integer NOT NULL);

DROP FUNCTION IF EXISTS retrysafe_now();

CREATE OR REPLACE FUNCTION retrysafe_claim(
    p_key text, p_fp text, p_owner text, p_lease double precision, p_ttl double precision,
    p_takeover boolean, p_nonce text, p_channel text, p_checkpoint boolean, p_meta text
) RETURNS TABLE (status text, fence text, payload bytea, lease_left double precision,
                 took boolean, expired_now boolean)
LANGUAGE plpgsql AS $$
DECLARE
    now_ double precision := extract(epoch FROM clock_timestamp())::float8;
    rec retrysafe_records%ROWTYPE;
    counter_ bigint;
BEGIN
    -- The replay path: a completed record is read without a lock.
    SELECT * INTO rec FROM retrysafe_records r
     WHERE r.key = p_key AND r.state = 'completed' AND r.fp = p_fp AND r.expires > now_;
    IF FOUND THEN
        RETURN QUERY SELECT 'completed'::text, rec.fence, rec.payload, 0::float8, false, false;
        RETURN;
    END IF;
    -- Claims of one key queue on its fence row (it outlives the record).
    INSERT INTO retrysafe_fences AS f (key, counter) VALUES (p_key, 0)
        ON CONFLICT (key) DO NOTHING;
    SELECT f.counter INTO counter_ FROM retrysafe_fences f WHERE f.key = p_key FOR UPDATE;
    -- A claim its caller abandoned before this statement arrived: refused, never recorded.
    -- (Read under the fence row's lock, which retrysafe_abandon takes too: one of them is
    -- first, and the other sees what it did.)
    IF EXISTS (SELECT 1 FROM retrysafe_kv k WHERE k.key = p_key || E'abandoned' || p_nonce
               AND k.expires > now_) THEN
        RETURN QUERY SELECT 'abandoned'::text, NULL::text, NULL::bytea, 0::float8, false, false;
        RETURN;
    END IF;
    SELECT * INTO rec FROM retrysafe_records r WHERE r.key = p_key;
    IF FOUND AND rec.expires <= now_ THEN
        DELETE FROM retrysafe_records r WHERE r.key = p_key;
        rec := NULL;
    END IF;
    IF rec.key IS NOT NULL THEN
        IF rec.state = 'in_progress' AND rec.nonce = p_nonce THEN  -- this claim, resent
            RETURN QUERY SELECT 'claimed'::text, rec.fence, NULL::bytea, 0::float8, false, false;
            RETURN;
        END IF;
        IF rec.fp <> p_fp THEN
            RETURN QUERY SELECT 'mismatch'::text, rec.fence, NULL::bytea, 0::float8, false, false;
            RETURN;
        END IF;
        IF rec.state = 'completed' THEN
            RETURN QUERY SELECT 'completed'::text, rec.fence, rec.payload, 0::float8, false, false;
            RETURN;
        END IF;
        IF rec.state = 'unknown' THEN
            RETURN QUERY SELECT 'unknown'::text, rec.fence, NULL::bytea, 0::float8, false, false;
            RETURN;
        END IF;
        IF rec.lease > now_ THEN
            RETURN QUERY SELECT 'in_progress'::text, rec.fence, NULL::bytea, rec.lease - now_,
                                false, false;
            RETURN;
        END IF;
        -- A write's owner vanished mid-call: it may have acted, unless it claimed with a
        -- checkpoint and never reached it.
        IF NOT p_takeover AND NOT rec.unstarted THEN
            UPDATE retrysafe_records r SET state = 'unknown', expires = now_ + p_ttl,
                   updated = now_ WHERE r.key = p_key;
            PERFORM pg_notify(p_channel, p_key);
            RETURN QUERY SELECT 'unknown'::text, rec.fence, NULL::bytea, 0::float8, false, true;
            RETURN;
        END IF;
    END IF;
    UPDATE retrysafe_fences f SET counter = f.counter + 1 WHERE f.key = p_key
        RETURNING f.counter INTO counter_;
    -- A takeover keeps the record's first claim time (its attempts are its fence counter).
    INSERT INTO retrysafe_records AS r
        (key, state, fp, owner, fence, nonce, lease, payload, expires, unstarted, meta,
         created, updated)
        VALUES (p_key, 'in_progress', p_fp, p_owner, counter_::text || p_nonce, p_nonce,
                now_ + p_lease, NULL, now_ + p_ttl, p_checkpoint AND NOT p_takeover, p_meta,
                now_, now_)
        ON CONFLICT (key) DO UPDATE SET state = excluded.state, fp = excluded.fp,
            owner = excluded.owner, fence = excluded.fence, nonce = excluded.nonce,
            lease = excluded.lease, payload = NULL, expires = excluded.expires,
            unstarted = excluded.unstarted, meta = excluded.meta,
            created = CASE WHEN r.created > 0 THEN r.created ELSE excluded.created END,
            updated = excluded.updated;
    RETURN QUERY SELECT 'claimed'::text, counter_::text || p_nonce, NULL::bytea, 0::float8,
                        rec.key IS NOT NULL, false;
END $$;

-- Version 5's form (processes not yet upgraded): the same, with no metadata.
CREATE OR REPLACE FUNCTION retrysafe_claim(
    p_key text, p_fp text, p_owner text, p_lease double precision, p_ttl double precision,
    p_takeover boolean, p_nonce text, p_channel text, p_checkpoint boolean
) RETURNS TABLE (status text, fence text, payload bytea, lease_left double precision,
                 took boolean, expired_now boolean)
LANGUAGE sql AS $$
    SELECT * FROM retrysafe_claim(p_key, p_fp, p_owner, p_lease, p_ttl, p_takeover, p_nonce,
                                  p_channel, p_checkpoint, NULL::text)
$$;

CREATE OR REPLACE FUNCTION retrysafe_complete(
    p_key text, p_fence text, p_payload bytea, p_ttl double precision, p_channel text
) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    now_ double precision := extract(epoch FROM clock_timestamp())::float8;
BEGIN
    UPDATE retrysafe_records r
       SET state = 'completed', payload = p_payload, owner = NULL, expires = now_ + p_ttl,
           updated = now_
     WHERE r.key = p_key AND r.fence = p_fence AND r.state IN ('in_progress', 'unknown')
       AND r.expires > now_;
    IF FOUND THEN
        PERFORM pg_notify(p_channel, p_key);
        RETURN true;
    END IF;
    -- This fence's completion made before (a resent operation, or one recorded in the
    -- application's own transaction) is done, not lost.
    RETURN EXISTS (SELECT 1 FROM retrysafe_records r
                    WHERE r.key = p_key AND r.fence = p_fence AND r.state = 'completed');
END $$;

CREATE OR REPLACE FUNCTION retrysafe_abandon(
    p_key text, p_nonce text, p_channel text
) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    now_ double precision := extract(epoch FROM clock_timestamp())::float8;
    gone_ integer;
BEGIN
    -- Under the key's fence row lock, as claims: a claim of this nonce that arrives later
    -- finds the tombstone (kept an hour), one that came first is removed here.
    INSERT INTO retrysafe_fences AS f (key, counter) VALUES (p_key, 0)
        ON CONFLICT (key) DO NOTHING;
    PERFORM 1 FROM retrysafe_fences f WHERE f.key = p_key FOR UPDATE;
    INSERT INTO retrysafe_kv (key, value, num, owner, items, expires)
        VALUES (p_key || E'abandoned' || p_nonce, NULL, NULL, NULL, NULL, now_ + 3600)
        ON CONFLICT (key) DO UPDATE SET expires = excluded.expires;
    DELETE FROM retrysafe_records r WHERE r.key = p_key AND r.nonce = p_nonce
        AND r.state IN ('in_progress', 'unknown');
    GET DIAGNOSTICS gone_ = ROW_COUNT;
    PERFORM pg_notify(p_channel, p_key);
    RETURN gone_;
END $$;

-- Settled by hand: COMPLETED with p_payload, or removed. A live owner's record is not (it
-- is running, not unknown). With p_fence (version 5: what an operator saw), only while that
-- claim holds it: never a newer claim's, never one its late owner completed.
CREATE OR REPLACE FUNCTION retrysafe_resolve(
    p_key text, p_payload bytea, p_applied boolean, p_ttl double precision, p_channel text,
    p_fence text
) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    now_ double precision := extract(epoch FROM clock_timestamp())::float8;
    rec record;
BEGIN
    SELECT r.state, r.lease, r.fence INTO rec FROM retrysafe_records r
     WHERE r.key = p_key AND r.expires > now_ FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF rec.state = 'in_progress' AND rec.lease > now_ THEN
        RETURN 'held';
    END IF;
    IF p_fence IS NOT NULL THEN
        IF rec.state = 'completed' THEN
            RETURN 'completed';
        END IF;
        IF rec.fence <> p_fence THEN
            RETURN 'changed';
        END IF;
    END IF;
    IF p_applied THEN
        UPDATE retrysafe_records r SET state = 'completed', payload = p_payload, owner = NULL,
               expires = now_ + p_ttl, updated = now_ WHERE r.key = p_key;
    ELSE
        DELETE FROM retrysafe_records r WHERE r.key = p_key;
    END IF;
    PERFORM pg_notify(p_channel, p_key);
    RETURN rec.state;
END $$;

-- Version 4's form (processes not yet upgraded): the same, fenced on nothing.
CREATE OR REPLACE FUNCTION retrysafe_resolve(
    p_key text, p_payload bytea, p_applied boolean, p_ttl double precision, p_channel text
) RETURNS text LANGUAGE sql AS $$
    SELECT retrysafe_resolve(p_key, p_payload, p_applied, p_ttl, p_channel, NULL::text)
$$;

CREATE OR REPLACE FUNCTION retrysafe_tail(arr text[], keep integer) RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT arr[greatest(1, coalesce(array_length(arr, 1), 0) - keep + 1):]
$$;
