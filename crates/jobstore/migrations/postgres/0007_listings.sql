-- Listings answered from an index (issue 25): a page of `list_schedules` walks an index in id
-- order for whichever filter it has, instead of the primary key across every row.

-- An owner's schedules, a target kind's, the paused ones.
CREATE INDEX schedules_execution_owner_id ON schedules_execution (owner, id);
CREATE INDEX schedules_execution_kind_id ON schedules_execution ((target->>'type'), id);
CREATE INDEX schedules_execution_paused_id ON schedules_execution (paused, id);
CREATE INDEX schedules_batched_notifications_owner_id ON schedules_batched_notifications (owner, id);
CREATE INDEX schedules_batched_notifications_kind_id ON schedules_batched_notifications ((target->>'type'), id);
CREATE INDEX schedules_batched_notifications_paused_id ON schedules_batched_notifications (paused, id);
CREATE INDEX schedules_weekly_notifications_owner_id ON schedules_weekly_notifications (owner, id);
CREATE INDEX schedules_weekly_notifications_kind_id ON schedules_weekly_notifications ((target->>'type'), id);
CREATE INDEX schedules_weekly_notifications_paused_id ON schedules_weekly_notifications (paused, id);

-- A schedule's tags, one row each, kept by the database from the `tags` column: a tag's
-- schedules in id order.
CREATE TABLE schedule_tags (
    jobstore    TEXT NOT NULL,
    tag         TEXT NOT NULL,
    schedule_id TEXT NOT NULL,
    PRIMARY KEY (jobstore, tag, schedule_id)
);
CREATE INDEX schedule_tags_schedule ON schedule_tags (jobstore, schedule_id);

CREATE FUNCTION schedule_tags_kept() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        DELETE FROM schedule_tags WHERE jobstore = TG_ARGV[0] AND schedule_id = OLD.id;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        INSERT INTO schedule_tags (jobstore, tag, schedule_id)
        SELECT TG_ARGV[0], tag, NEW.id FROM jsonb_array_elements_text(NEW.tags) AS tag
        ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END
$$;

-- Only a schedule with tags costs a trigger's call.
CREATE TRIGGER schedules_execution_tags_insert AFTER INSERT ON schedules_execution
    FOR EACH ROW WHEN (NEW.tags <> '[]') EXECUTE FUNCTION schedule_tags_kept('execution');
CREATE TRIGGER schedules_execution_tags_update AFTER UPDATE OF tags ON schedules_execution
    FOR EACH ROW WHEN (OLD.tags IS DISTINCT FROM NEW.tags)
    EXECUTE FUNCTION schedule_tags_kept('execution');
CREATE TRIGGER schedules_execution_tags_delete AFTER DELETE ON schedules_execution
    FOR EACH ROW WHEN (OLD.tags <> '[]') EXECUTE FUNCTION schedule_tags_kept('execution');

CREATE TRIGGER schedules_batched_notifications_tags_insert AFTER INSERT ON schedules_batched_notifications
    FOR EACH ROW WHEN (NEW.tags <> '[]') EXECUTE FUNCTION schedule_tags_kept('batched_notifications');
CREATE TRIGGER schedules_batched_notifications_tags_update AFTER UPDATE OF tags ON schedules_batched_notifications
    FOR EACH ROW WHEN (OLD.tags IS DISTINCT FROM NEW.tags)
    EXECUTE FUNCTION schedule_tags_kept('batched_notifications');
CREATE TRIGGER schedules_batched_notifications_tags_delete AFTER DELETE ON schedules_batched_notifications
    FOR EACH ROW WHEN (OLD.tags <> '[]') EXECUTE FUNCTION schedule_tags_kept('batched_notifications');

CREATE TRIGGER schedules_weekly_notifications_tags_insert AFTER INSERT ON schedules_weekly_notifications
    FOR EACH ROW WHEN (NEW.tags <> '[]') EXECUTE FUNCTION schedule_tags_kept('weekly_notifications');
CREATE TRIGGER schedules_weekly_notifications_tags_update AFTER UPDATE OF tags ON schedules_weekly_notifications
    FOR EACH ROW WHEN (OLD.tags IS DISTINCT FROM NEW.tags)
    EXECUTE FUNCTION schedule_tags_kept('weekly_notifications');
CREATE TRIGGER schedules_weekly_notifications_tags_delete AFTER DELETE ON schedules_weekly_notifications
    FOR EACH ROW WHEN (OLD.tags <> '[]') EXECUTE FUNCTION schedule_tags_kept('weekly_notifications');

INSERT INTO schedule_tags (jobstore, tag, schedule_id)
SELECT 'execution', tag, id FROM schedules_execution, jsonb_array_elements_text(tags) AS tag
UNION
SELECT 'batched_notifications', tag, id FROM schedules_batched_notifications,
    jsonb_array_elements_text(tags) AS tag
UNION
SELECT 'weekly_notifications', tag, id FROM schedules_weekly_notifications,
    jsonb_array_elements_text(tags) AS tag;
