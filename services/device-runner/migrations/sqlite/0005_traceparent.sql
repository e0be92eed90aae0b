-- The W3C trace context a job continues (the scheduler's occurrence that queued it), so that
-- its queueing, run and stop are spans of that trace and its process gets TRACEPARENT.
ALTER TABLE jobs ADD COLUMN traceparent TEXT;
