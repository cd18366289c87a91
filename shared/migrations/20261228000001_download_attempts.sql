-- Issue 15 item 6 (DEC-23): a download link allows a bounded number of attempts. Each claim of
-- the token counts one; an incomplete read gives the token back but not the attempt, so endless
-- partial reads cannot keep a link alive.
ALTER TABLE download_tokens ADD COLUMN attempts INT NOT NULL DEFAULT 0;
