// Package osc changes the schema of a live MySQL/MariaDB table without blocking its writes for more
// than a moment, the way gh-ost does, built from ferry's binlog streamer: an online schema change.
//
// A Migration creates a ghost table _<t>_gho (CREATE TABLE LIKE the original, then the ALTER),
// copies the original's rows into it in key-range chunks with same-server strict
// INSERT ... SELECT ... LOCK IN SHARE MODE statements (CopyWorkers chunks at once, each at READ
// COMMITTED on its own connection), applies every row change of the
// original that the binlog carries to the ghost (columns mapped old → new), and finally swaps the
// tables with gh-ost's atomic cut-over: RENAME TABLE t TO <t>_del, _<t>_gho TO t, queued behind a
// lock so that no write lands in between. (Unlike gh-ost, the sentry and old table is <t>_del, not
// _<t>_del: RENAME takes its metadata locks in name order, and with a sentry that sorts before the
// table, writes queued during the lock can slip into the old table between the unlock and the
// rename — seen in 2 of 30 cut-overs on MariaDB 10.11. A name that starts with the table's own sorts
// after it, so the RENAME is queued on the table itself and runs before any queued write. The
// ghost _<t>_gho does sort before t, so its lock is taken first: on MariaDB the cut-over unlocks
// only once the RENAME is seen holding it (renameHoldsGhost), not merely waiting on some lock.) A changelog table _<t>_ghc carries heartbeats (the apply
// lag is measured as they come back through the binlog) and the cut-over marker.
//
// # Validation (before any write)
//
// The binlog must be on, ROW, FULL. The table needs a primary key or a NOT NULL unique key; the
// ALTER must keep one such key (same columns, same types) for the new table, as a key of its own
// or as the leading columns of a wider one ((id) → (id, i)). Keys on ENUM, SET, FLOAT, DOUBLE,
// BIT and JSON columns cannot be paged by and are refused as such. Only one migration of a table
// runs at a time: each run holds a GET_LOCK named after the table for its whole life, and a second
// run is refused with the holder's connection id, user and host (lock.go). Column renames
// (CHANGE old new, RENAME COLUMN) are refused unless approved (ApproveRenamedColumns or
// ApprovedRenames), because a CHANGE that renames by accident would silently drop the column's
// values; dropped columns are reported in the Plan. Foreign keys and triggers are refused unless
// AllowForeignKeys / AllowTriggers, or triggers carried over with IncludeTriggers (triggers.go).
// Leftover _<t>_gho, _<t>_ghc and <t>_del tables are an error unless DropLeftovers or Resume, and
// ferry drops or reuses only the ones it marked as its own (marks.go): anything else is refused,
// named.
// Then the empty ghost table is created and altered (the first write; the original is never
// written): an added NOT NULL column without a default, or a new unique key is refused unless
// AllowNewUniqueKey, in which case the rows are checked for duplicates first. Whenever a unique key
// is new or changes type or collation, the cut-over compares the row counts of both tables under
// its lock and aborts if they differ (the apply's REPLACE would delete a colliding row silently).
//
// # The new table holds what ALTER TABLE would have stored
//
// The copy is strict (copy.go): a value the new column cannot hold or a duplicate on a new or
// changed unique key fails the migration before the cut-over with the server's own error and the
// row's key, as the same error fails a plain ALTER TABLE; the original is untouched. The ghost
// DDL, the copy and the apply run under the server's sql_mode (or SQLMode), strict; conversions
// involving TIMESTAMP are done in the server's time zone (or TimeZone), and the apply converts
// binlog values through the same expressions the copy uses (session.go). The column mapping follows
// the ALTER: a column dropped and added again under its name is a new column. The AUTO_INCREMENT
// counter is carried over under the cut-over lock. Unless SkipVerification, an ALTER that keeps
// the columns' values is verified (the verifier's Checksum, over snapshots of both tables taken
// where they must be equal) before the cut-over, and the rows changed since are compared again
// under its lock (verify.go). Without Execute, Run stops here (dry run)
// and drops the ghost; Plan.InstantPossible says whether the server could do the ALTER in place
// with ALGORITHM=INSTANT instead.
//
// # Character sets
//
// Binlog values of character columns are bytes in the column's old character set. A column whose
// character set changes (e.g. latin1 → utf8mb4) is written as CONVERT(CAST(? AS BINARY) USING
// latin1), so the server converts the characters exactly as the copy's INSERT ... SELECT does.
//
// # Guarantees
//
// The original table's rows are never written by ferry; it is locked only during a cut-over attempt
// (at most about CutoverLockTimeout per attempt) and renamed only by the single atomic RENAME. If the
// process or its connection dies:
//
//   - before the cut-over: the original is unchanged and in use; _gho and _ghc are left over: resume
//     with Resume (--resume), or drop them, or run again with DropLeftovers;
//   - while the locking session holds the lock: the lock ends with the session; the sentry table
//     <t>_del stays, so the queued rename (if any) fails: the original is unchanged;
//   - after the rename: the migration is complete; <t>_del is the old table and _<t>_ghc is left over.
//
// # Resume
//
// While copying and catching up, a checkpoint (JSON, one atomically upserted row of _<t>_ghc, every
// CheckpointInterval) records the end of the last copy chunk below which every chunk committed
// (chunks copied at once finish in any order; the checkpoint never passes one still being copied),
// whether the copy finished, and
// the binlog position before which every change of the original is applied to the ghost (a
// transaction boundary), with fingerprints of both tables' definitions and the ALTER. With Resume, Run
// refuses if the ALTER or either definition changed or the checkpoint's binlog file is gone, and
// otherwise copies on after the checkpointed key and applies the binlog again from the checkpointed
// position: the apply writes whole rows and deletes by key in binlog order, so changes applied twice
// converge, and the copy skips rows already in the ghost (NOT EXISTS on the shared key). A schema change of
// the original after the checkpoint is also caught by the replayed binlog. A killed cut-over attempt
// leaves its sentry, which Resume drops (the original was not renamed). Leftovers of a run that died
// before its first checkpoint are dropped and the migration starts afresh. A two-step cut-over
// that died between its renames (t missing, <t>_del and _<t>_gho marked) is finished by Resume
// with RENAME TABLE _<t>_gho TO t; without Resume the error prints that statement.
//
// A failed cut-over attempt leaves the original table in place and usable and is retried up to
// CutoverAttempts times. Writes blocked by each attempt are measured (Result.WriteBlocked). After
// the rename, ferry reads the binlog up to the RENAME and checks that no change of the original
// came after the cut-over marker: if one ever did (it would be in <t>_del only), Run fails loudly
// instead of losing it silently; if the stream does not reach that RENAME within a minute (or stops
// elsewhere), Run fails too, saying the rename is done and the check could not be made.
//
// With UseInstant, an ALTER the server can do with ALGORITHM=INSTANT runs in place instead: no
// ghost table and no copy, the same bounded wait for the metadata lock.
//
// The ghost table converges to the original because the copy holds shared locks on the rows of a
// chunk until the chunk is in the ghost (a racing change is applied after the copy; the argument
// is about one chunk's own rows, so it holds for chunks copied at once, whose ranges are
// disjoint), the apply
// writes whole row images by key and deletes by key (idempotent, order preserving), and the cut-over
// applies every event up to the lock (proved by a marker written after the lock) before renaming.
//
// # On a replica
//
// MigrateOnReplica migrates a replica's table only; TestOnReplica does the same but stops
// replication right before the cut-over, cuts over and swaps the tables back, leaving the original
// exactly as replication left it at the reported position and the migrated table as _<t>_gho, with
// the statements that compare them (Result.ReplicaTest). The replication applier is a writer of
// the table: its changes reach the ghost through the replica's binlog (log_slave_updates, refused
// without), and the cut-over's LOCK TABLES holds it like any session. Refused before any write: a
// server that is not a replica, read_only that stops this user, gtid_strict_mode in replication's
// domain, and (migrate) an ALTER that moves columns, since replication goes on writing the
// primary's rows into the new table by column position. See replica.go and docs/design.md.
//
// # Operability
//
// A Throttler and the apply lag (MaxLag) pause the copy; Hooks (Go funcs and executables with
// environment variables) run at startup, validated, row-copy-complete, before-cut-over, success,
// failure and status; the cut-over waits while PostponeFlagFile exists or Postpone is set until
// Unpostpone; Command / ServeSocket take interactive commands (status, throttle, no-throttle,
// chunk-size=N, cut-over, panic); Status / OnStatus report copied and estimated rows, percent,
// events applied, backlog, lag, state and ETA.
//
// ENUM and SET values arrive from the binlog as member numbers of the old definition; when the
// column's type changes they are written as ELT(n, old members...) / MAKE_SET(bits, old members...),
// so reordered members and ENUM → VARCHAR keep their labels, as the copy's INSERT ... SELECT does.
//
// Limits: one table per Migration; the paging key's columns and types must stay the same (or be
// widened); foreign keys are not carried over, triggers only with IncludeTriggers; a row with id 0
// in an AUTO_INCREMENT column keeps id 0 (NO_AUTO_VALUE_ON_ZERO), where a plain ALTER TABLE
// without that mode would renumber it; an added AUTO_INCREMENT column is refused (ALTER TABLE numbers
// the rows in the table's order, an online copy in the order they reach the ghost); the re-check
// of the verification under the lock covers at most 20,000 changed rows.
package osc
