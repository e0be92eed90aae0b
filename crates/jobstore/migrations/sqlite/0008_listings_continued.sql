-- Listings answered from an index, continued (issue 25): a workflow's watches newest first
-- (`list_watches {workflow_id}` reads them in id order), and AutoGPT's listing of a graph's
-- schedules (`get_graph_execution_schedules {graph_id}`), which live in the `execution` store.
DROP INDEX watches_workflow;
CREATE INDEX watches_workflow_id ON watches (workflow_id, id) WHERE workflow_id IS NOT NULL;
CREATE INDEX schedules_execution_graph_id ON schedules_execution (json_extract(target, '$.graph_id'), id)
    WHERE json_extract(target, '$.graph_id') IS NOT NULL;

-- The paused schedules in id order, from an index of them alone. The (paused, id) index of
-- 0007 served the listing by the paused flag, but SQLite's planner, without statistics, took
-- it for the claims and the wakeup too (`paused = 0`, then a sort of every active schedule)
-- instead of the due index. A listing of the active ones walks the primary key, where nearly
-- every row is one.
DROP INDEX schedules_execution_paused_id;
DROP INDEX schedules_batched_notifications_paused_id;
DROP INDEX schedules_weekly_notifications_paused_id;
CREATE INDEX schedules_execution_paused ON schedules_execution (id) WHERE paused = 1;
CREATE INDEX schedules_batched_notifications_paused ON schedules_batched_notifications (id) WHERE paused = 1;
CREATE INDEX schedules_weekly_notifications_paused ON schedules_weekly_notifications (id) WHERE paused = 1;
