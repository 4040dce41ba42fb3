-- domain_objects.data becomes jsonb, so that a team's code can query it
-- (`data->>'status'`, `data @> '{"paid": true}'`). Twin of
-- migrations/sqlite/0007_domain_data_jsonb.sql.
--
-- jsonb refuses three things a valid JSON text may carry: the escape
-- \u0000 (a NUL in a string), an escaped UTF-16 surrogate without its other
-- half ("\ud83d"), and a number beyond numeric's range (1e-20000). Each row
-- is converted as every new write is (src/store/domain_data.rs): such an
-- escape becomes \ufffd (U+FFFD), such a number null; nothing else changes.
-- An escape counts only where JSON reads one: a backslash that an odd run
-- of backslashes ends. `(?<!\\)((?:\\\\)*)\\u` matches an even run (escaped
-- backslashes, kept by `\1`) and then the escape's backslash, so the text
-- \\u0000 (an escaped backslash, then the letters u0000) is left as it is.
-- After a surrogate escape's four digits a backslash always begins the next
-- escape, so a high half's partner is the `\\u` right after it.
--
-- String literals here rely on standard_conforming_strings = on (the
-- default): a backslash in '...' is itself.
--
-- The helpers live in pg_temp: gone when the migrating session ends.

-- Whether `token`, a JSON number, fits numeric (what jsonb stores numbers as).
CREATE FUNCTION pg_temp.hookledger_fits_numeric(token text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM token::numeric;
    RETURN true;
EXCEPTION WHEN numeric_value_out_of_range OR invalid_text_representation THEN
    RETURN false;
END $$;

CREATE FUNCTION pg_temp.hookledger_domain_data(data text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    escape CONSTANT text := '(?<!\\)((?:\\\\)*)\\u';
    high   CONSTANT text := '[dD][89abAB][0-9a-fA-F]{2}';
    low    CONSTANT text := '[dD][c-fC-F][0-9a-fA-F]{2}';
    fixed  text := data;
BEGIN
    IF strpos(fixed, '\u') > 0 THEN
        fixed := regexp_replace(fixed, escape || '0000', '\1\\ufffd', 'g');
        -- A high half not followed by a low one.
        fixed := regexp_replace(fixed, escape || high || '(?!\\u' || low || ')',
                                '\1\\ufffd', 'g');
        -- A low half not preceded by a high one (itself a real escape).
        fixed := regexp_replace(fixed,
                                '(?<!(?:^|[^\\])(?:\\\\)*\\u' || high || ')' || escape || low,
                                '\1\\ufffd', 'g');
    END IF;
    BEGIN
        RETURN fixed::jsonb;
    EXCEPTION WHEN numeric_value_out_of_range THEN
        NULL; -- a number beyond numeric: rebuilt below
    END;
    -- Token by token (strings whole, numbers, everything else), each number
    -- that numeric refuses as null.
    SELECT string_agg(CASE WHEN t.m[2] IS NULL OR pg_temp.hookledger_fits_numeric(t.m[2])
                           THEN t.m[1] ELSE 'null' END, '' ORDER BY t.n)
      INTO fixed
      FROM regexp_matches(fixed, '("(?:[^"\\]|\\.)*"|(-?[0-9][-+.eE0-9]*)|[^"0-9-]+)', 'g')
           WITH ORDINALITY AS t(m, n);
    RETURN fixed::jsonb;
END $$;

ALTER TABLE domain_objects
    ALTER COLUMN data TYPE jsonb USING pg_temp.hookledger_domain_data(data);

DROP FUNCTION pg_temp.hookledger_domain_data(text);
DROP FUNCTION pg_temp.hookledger_fits_numeric(text);
