-- The claim's second per-object check (store/queue.rs): is another event of
-- this object in flight? Only `processing` rows are in it, a handful at any
-- time, so the check is one probe however long the object's backlog is (the
-- wider events_object_open holds every pending row too).
CREATE INDEX events_object_in_flight ON events (source, object_type, object_id)
    WHERE status = 'processing';
