// Package snapshot takes online snapshots of a live MySQL/MariaDB source, restores them, clones
// (restore + binlog catch-up + cut-over) and splits them by key range.
//
// # Guarantees
//
//   - One position. Every table of a snapshot holds the source's rows as of one binlog position,
//     recorded in the manifest with its GTID position. The rows are read by several connections,
//     each in a transaction opened WITH CONSISTENT SNAPSHOT; they share one position either because
//     the server says so (MariaDB's binlog_snapshot_file/position, equal on every connection: no
//     lock at all) or because commits were stopped for the moment the snapshots were opened
//     (BACKUP STAGE BLOCK_COMMIT, or FLUSH TABLES WITH READ LOCK). docs/design.md gives the argument.
//   - Exact bytes. Rows are stored in LOAD DATA's text form, read as bytes (character_set_results
//     binary, time_zone UTC, FLOAT as DOUBLE, BIT as its integer), the encoding the copy's LOAD DATA
//     writer uses; every type of the type matrix round-trips byte for byte.
//   - Never half a snapshot. Files are written whole (temporary file + rename; one S3 upload) and the
//     manifest, with every file's SHA-256, size, row count and key range, is written last. A restore
//     checks every file before writing anything, checks each again while loading it, and loads each
//     in one transaction that records it as loaded: an interrupted restore resumes (Resume) with
//     exactly the missing files.
//   - Clone is exact: the binlog is replayed from the snapshot's position as idempotent images.
//   - Memory flat in table size: each reading connection holds one row, a 256 KiB batch, one zstd
//     encoder (1 MiB window) and a 256 KiB read buffer; a restore streams each file into LOAD DATA.
//   - Renamed databases (RestoreOptions.DatabaseRewrites) are checked before anything is written:
//     every rewritten database is in the snapshot, no two of one snapshot land in one, and no
//     foreign key names a rewritten database.
//   - Views and stored routines are stored as definitions and created only when asked
//     (RestoreOptions.CreateSchemaObjects), never in a rewritten database.
package snapshot
