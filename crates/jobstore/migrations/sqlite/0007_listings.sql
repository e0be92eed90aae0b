-- Listings answered from an index (issue 25): a page of `list_schedules` walks an index in id
-- order for whichever filter it has, instead of the primary key across every row.

-- An owner's schedules, a target kind's, the paused ones. The kind's expression is written as
-- the listing writes it, which is what lets SQLite use the index.
CREATE INDEX schedules_execution_owner_id ON schedules_execution (owner, id);
CREATE INDEX schedules_execution_kind_id ON schedules_execution (json_extract(target, '$.type'), id);
CREATE INDEX schedules_execution_paused_id ON schedules_execution (paused, id);
CREATE INDEX schedules_batched_notifications_owner_id ON schedules_batched_notifications (owner, id);
CREATE INDEX schedules_batched_notifications_kind_id ON schedules_batched_notifications (json_extract(target, '$.type'), id);
CREATE INDEX schedules_batched_notifications_paused_id ON schedules_batched_notifications (paused, id);
CREATE INDEX schedules_weekly_notifications_owner_id ON schedules_weekly_notifications (owner, id);
CREATE INDEX schedules_weekly_notifications_kind_id ON schedules_weekly_notifications (json_extract(target, '$.type'), id);
CREATE INDEX schedules_weekly_notifications_paused_id ON schedules_weekly_notifications (paused, id);

-- A schedule's tags, one row each, kept by the database from the `tags` column: a tag's
-- schedules in id order.
CREATE TABLE schedule_tags (
    jobstore    TEXT NOT NULL,
    tag         TEXT NOT NULL,
    schedule_id TEXT NOT NULL,
    PRIMARY KEY (jobstore, tag, schedule_id)
) WITHOUT ROWID;
CREATE INDEX schedule_tags_schedule ON schedule_tags (jobstore, schedule_id);

CREATE TRIGGER schedules_execution_tags_insert AFTER INSERT ON schedules_execution
    WHEN NEW.tags <> '[]' BEGIN
    INSERT OR IGNORE INTO schedule_tags (jobstore, tag, schedule_id)
    SELECT 'execution', value, NEW.id FROM json_each(NEW.tags);
END;
CREATE TRIGGER schedules_execution_tags_update AFTER UPDATE OF tags ON schedules_execution
    WHEN OLD.tags IS NOT NEW.tags BEGIN
    DELETE FROM schedule_tags WHERE jobstore = 'execution' AND schedule_id = OLD.id;
    INSERT OR IGNORE INTO schedule_tags (jobstore, tag, schedule_id)
    SELECT 'execution', value, NEW.id FROM json_each(NEW.tags);
END;
CREATE TRIGGER schedules_execution_tags_delete AFTER DELETE ON schedules_execution
    WHEN OLD.tags <> '[]' BEGIN
    DELETE FROM schedule_tags WHERE jobstore = 'execution' AND schedule_id = OLD.id;
END;

CREATE TRIGGER schedules_batched_notifications_tags_insert AFTER INSERT ON schedules_batched_notifications
    WHEN NEW.tags <> '[]' BEGIN
    INSERT OR IGNORE INTO schedule_tags (jobstore, tag, schedule_id)
    SELECT 'batched_notifications', value, NEW.id FROM json_each(NEW.tags);
END;
CREATE TRIGGER schedules_batched_notifications_tags_update AFTER UPDATE OF tags ON schedules_batched_notifications
    WHEN OLD.tags IS NOT NEW.tags BEGIN
    DELETE FROM schedule_tags WHERE jobstore = 'batched_notifications' AND schedule_id = OLD.id;
    INSERT OR IGNORE INTO schedule_tags (jobstore, tag, schedule_id)
    SELECT 'batched_notifications', value, NEW.id FROM json_each(NEW.tags);
END;
CREATE TRIGGER schedules_batched_notifications_tags_delete AFTER DELETE ON schedules_batched_notifications
    WHEN OLD.tags <> '[]' BEGIN
    DELETE FROM schedule_tags WHERE jobstore = 'batched_notifications' AND schedule_id = OLD.id;
END;

CREATE TRIGGER schedules_weekly_notifications_tags_insert AFTER INSERT ON schedules_weekly_notifications
    WHEN NEW.tags <> '[]' BEGIN
    INSERT OR IGNORE INTO schedule_tags (jobstore, tag, schedule_id)
    SELECT 'weekly_notifications', value, NEW.id FROM json_each(NEW.tags);
END;
CREATE TRIGGER schedules_weekly_notifications_tags_update AFTER UPDATE OF tags ON schedules_weekly_notifications
    WHEN OLD.tags IS NOT NEW.tags BEGIN
    DELETE FROM schedule_tags WHERE jobstore = 'weekly_notifications' AND schedule_id = OLD.id;
    INSERT OR IGNORE INTO schedule_tags (jobstore, tag, schedule_id)
    SELECT 'weekly_notifications', value, NEW.id FROM json_each(NEW.tags);
END;
CREATE TRIGGER schedules_weekly_notifications_tags_delete AFTER DELETE ON schedules_weekly_notifications
    WHEN OLD.tags <> '[]' BEGIN
    DELETE FROM schedule_tags WHERE jobstore = 'weekly_notifications' AND schedule_id = OLD.id;
END;

INSERT OR IGNORE INTO schedule_tags (jobstore, tag, schedule_id)
SELECT 'execution', j.value, s.id FROM schedules_execution s, json_each(s.tags) j;
INSERT OR IGNORE INTO schedule_tags (jobstore, tag, schedule_id)
SELECT 'batched_notifications', j.value, s.id FROM schedules_batched_notifications s, json_each(s.tags) j;
INSERT OR IGNORE INTO schedule_tags (jobstore, tag, schedule_id)
SELECT 'weekly_notifications', j.value, s.id FROM schedules_weekly_notifications s, json_each(s.tags) j;
