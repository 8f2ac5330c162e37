-- A delivery whose first attempt failed keeps that attempt in its own row
-- instead of a row of webhook_attempts beside it: a failure is one row
-- written (with its retry schedule), not two. JSON, as the delivery log
-- shows an attempt: {attempt, attemptedAt, statusCode, latencyMs, error,
-- responseBody}. Later attempts (retries, redeliveries) stay rows of
-- webhook_attempts; rows written before this column keep their first
-- attempt there too, and the delivery log reads both.
ALTER TABLE webhook_deliveries ADD COLUMN first_attempt text;
