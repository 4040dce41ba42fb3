-- One-use tokens of signature schemes whose MAC does not cover the event
-- (SPEC §11, Mailgun: the HMAC is of timestamp + token only). The first
-- verified delivery with a token claims it for its event id; the token
-- with another event id is then refused (401 invalid_signature), so a
-- captured signature cannot carry forged event data. A row is useless once
-- its signed timestamp is out of tolerance either way, and is dropped then
-- (src/store/tokens.rs). Twin of migrations/postgres/0008_signature_tokens.sql.
CREATE TABLE signature_tokens (
    source   TEXT    NOT NULL,
    token    TEXT    NOT NULL,
    event_id TEXT    NOT NULL,
    seen_at  INTEGER NOT NULL,
    PRIMARY KEY (source, token)
);

CREATE INDEX signature_tokens_seen ON signature_tokens (source, seen_at);
