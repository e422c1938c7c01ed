package ferry

import (
	"context"
	"database/sql"
	"fmt"
	"math/big"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/ferrykit/ferry/internal/chunk"
	"github.com/ferrykit/ferry/internal/retry"
	"github.com/ferrykit/ferry/schema"
	"github.com/ferrykit/ferry/throttler"
)

// BatchSink receives each batch the DataIterator reads. It must return only once the batch is
// committed on the target: the iterator keeps the rows share-locked on the source until then.
type BatchSink func(ctx context.Context, b *RowBatch) error

// DataIterator reads every selected row of the tables from the source and hands it, in batches, to
// a BatchSink.
//
// Contract (this is what makes the copy safe under concurrent writes, see docs/design.md): each
// batch is read with a locking read (LOCK IN SHARE MODE) in a source transaction that stays open
// until the sink returns, so no UPDATE or DELETE of those rows can commit on the source — and so
// reach the binlog — before the copied version is committed on the target. A change that races the
// copy is therefore applied by the binlog writer after the copied row, never before.
type DataIterator interface {
	Run(ctx context.Context, tables []*TableCopy, sink BatchSink) error
}

// SourceDataIterator is the default DataIterator. It pages each table by its whole key in the
// server's order (composite, signed, string and binary keys; key values are compared only by the
// server), splits large tables into key ranges copied in parallel, and copies several tables at
// once with a pool of Workers.
type SourceDataIterator struct {
	DB *sql.DB
	// BatchSize returns the current batch size; it is read before every batch, so it can change
	// while running.
	BatchSize func() int
	// Workers is the number of ranges copied at once, across all tables; default 4.
	Workers int
	// RangesPerTable splits tables with more than a few batches of rows; default Workers.
	RangesPerTable int
	Throttler      throttler.Throttler
	OnThrottle     func(throttler.Status)
	MaxRetries     int
	Logger         logrus.FieldLogger

	// TargetChunkTime, when positive, adapts the batch size after every batch so that a batch —
	// the locking read, the write to the target and its commit — takes about this long (see
	// package internal/chunk), within MinBatchSize and MaxBatchSize (defaults 100 and
	// 100,000 rows). The size starts at BatchSize and each new size is handed to
	// SetBatchSize. Since the source rows of a batch stay share-locked until the target commits,
	// this is also about the longest an application write to those rows waits for the copy.
	// Zero keeps the batch size fixed.
	TargetChunkTime            time.Duration
	MinBatchSize, MaxBatchSize int
	SetBatchSize               func(int)
	// RowsPerSecond, when positive, caps the rate at which rows are copied, across all workers.
	// The wait happens between batches, never while source rows are locked.
	RowsPerSecond float64
	// GTIDQuery, when set, reads the source's GTID set after each batch's locking read, inside its
	// transaction, into RowBatch.SourceGTID (Flavor's gtid_binlog_pos or gtid_executed): the
	// checkpoint needs it to tell whether another server has everything the copied rows show.
	GTIDQuery string

	sizer   *chunk.Sizer
	limiter *rate.Limiter
	size    atomic.Int64 // the adaptive size when SetBatchSize is nil
}

type copyTask struct {
	table *TableCopy
	index int
}

// Run implements DataIterator.
func (it *SourceDataIterator) Run(ctx context.Context, tables []*TableCopy, sink BatchSink) error {
	workers := it.Workers
	if workers <= 0 {
		workers = 4
	}
	ranges := it.RangesPerTable
	if ranges <= 0 {
		ranges = workers
	}
	log := it.Logger
	if log == nil {
		log = logrus.StandardLogger()
	}
	if it.TargetChunkTime > 0 {
		it.sizer = chunk.NewSizer(it.TargetChunkTime, it.MinBatchSize, it.MaxBatchSize)
		if it.BatchSize != nil && it.BatchSize() > 0 {
			// A host's starting size below the minimum lowers the minimum: it asked for small batches.
			it.sizer.Min = min(it.sizer.Min, it.BatchSize())
		}
	}
	it.limiter = chunk.NewLimiter(it.RowsPerSecond)
	// Largest tables first: the longest table bounds the copy, so it must start early; a table that
	// must be copied after others (TableCopy.copyAfter) comes after them.
	ordered := append([]*TableCopy(nil), tables...)
	sort.SliceStable(ordered, func(i, j int) bool { return ordered[i].EstimatedRows > ordered[j].EstimatedRows })
	ordered = copyOrder(ordered)

	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(workers)
	copied := map[*TableCopy]*sync.WaitGroup{}
	for _, t := range ordered {
		if t.state.Completed {
			continue
		}
		for _, dep := range t.copyAfter {
			if wg := copied[dep]; wg != nil {
				if err := waitGroupCtx(gctx, wg); err != nil {
					break
				}
			}
		}
		wg := &sync.WaitGroup{}
		copied[t] = wg
		if len(t.state.Ranges) == 0 {
			planned, err := it.planRanges(gctx, t, ranges)
			if err != nil {
				g.Go(func() error { return err })
				break
			}
			t.setRanges(planned)
		}
		for i, r := range t.rangesSnapshot() {
			if r.Done {
				continue
			}
			task := copyTask{t, i}
			wg.Add(1)
			g.Go(func() error {
				defer wg.Done()
				return it.copyRange(gctx, task, sink, log)
			})
		}
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for _, t := range tables {
		t.markCompletedIfDone()
	}
	return nil
}

func (it *SourceDataIterator) copyRange(ctx context.Context, task copyTask, sink BatchSink, log logrus.FieldLogger) error {
	t := task.table
	keyCols := t.Source.KeyColumns()
	keyIdx := t.keyIndexes()
	for {
		if err := throttler.Wait(ctx, it.Throttler, it.OnThrottle); err != nil {
			return fmt.Errorf("copy %s: %w", t, err)
		}
		r := t.rangeSnapshot(task.index)
		if r.Done {
			return nil
		}
		size := it.batchSize()
		var n int
		var last Key
		var took time.Duration
		err := retry.Do(ctx, max(it.MaxRetries, 1), log, "copy "+t.String(), func() error {
			var err error
			began := time.Now()
			n, last, err = it.copyPage(ctx, t, keyCols, keyIdx, r, size, sink)
			took = time.Since(began)
			return err
		})
		if err != nil {
			return fmt.Errorf("copy %s: %w", t, retry.Unwrap(err))
		}
		t.recordCopied(task.index, last, n, n < size)
		if it.sizer != nil && n == size {
			// Only full batches are samples: a short last page says little about the next one.
			it.setBatchSize(it.sizer.Next(size, n, took))
		}
		if it.limiter != nil {
			if err := chunk.WaitRows(ctx, it.limiter, n); err != nil {
				return fmt.Errorf("copy %s: %w", t, err)
			}
		}
		if n < size {
			return nil
		}
	}
}

// batchSize is the size of the next batch: the adaptive size, else BatchSize, else 1000.
func (it *SourceDataIterator) batchSize() int {
	if it.sizer != nil && it.SetBatchSize == nil {
		if n := it.size.Load(); n > 0 {
			return int(n)
		}
	}
	size := 1000
	if it.BatchSize != nil && it.BatchSize() > 0 {
		size = it.BatchSize()
	}
	if it.sizer != nil {
		size = min(size, it.sizer.Max)
	}
	return size
}

func (it *SourceDataIterator) setBatchSize(n int) {
	if it.SetBatchSize != nil {
		it.SetBatchSize(n)
		return
	}
	it.size.Store(int64(n))
}

// copyPage reads one page after r.Last within r with a locking read and hands it to sink before
// releasing the locks.
func (it *SourceDataIterator) copyPage(ctx context.Context, t *TableCopy, keyCols []*schema.Column, keyIdx []int, r KeyRange, size int, sink BatchSink) (int, Key, error) {
	var conds []string
	var args []any
	lower := r.Last
	if lower == nil {
		lower = r.Start
	}
	if lower != nil {
		vals, err := schema.KeyArgs(keyCols, lower)
		if err != nil {
			return 0, nil, retry.Permanent(err)
		}
		c, a := schema.KeyCompare(keyCols, vals, ">", false)
		conds, args = append(conds, c), append(args, a...)
	}
	if r.End != nil {
		vals, err := schema.KeyArgs(keyCols, r.End)
		if err != nil {
			return 0, nil, retry.Permanent(err)
		}
		c, a := schema.KeyCompare(keyCols, vals, "<", true)
		conds, args = append(conds, c), append(args, a...)
	}
	if t.Condition != "" {
		conds = append(conds, "("+t.Condition+")")
	}
	q := "SELECT " + t.selectColumns() + " FROM " + t.Source.QualifiedName() + " FORCE INDEX (" + quoteIndex(t.Source.KeyName) + ")"
	if len(conds) > 0 {
		q += " WHERE " + strings.Join(conds, " AND ")
	}
	q += " " + orderByKey(keyCols) + " LIMIT " + strconv.Itoa(size) + " LOCK IN SHARE MODE"

	tx, err := it.DB.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return 0, nil, err
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, q, args...)
	if err != nil {
		return 0, nil, err
	}
	var batch [][]any
	ncol := len(t.Columns)
	for rows.Next() {
		vals := make([]any, ncol)
		ptrs := make([]any, ncol)
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			rows.Close()
			return 0, nil, err
		}
		batch = append(batch, vals)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, nil, err
	}
	if len(batch) == 0 {
		return 0, r.Last, tx.Commit()
	}
	lastRow := batch[len(batch)-1]
	last := make([]any, len(keyIdx))
	for i, k := range keyIdx {
		last[i] = lastRow[k]
	}
	b := &RowBatch{Table: t, Rows: batch}
	if it.GTIDQuery != "" {
		var gtid sql.NullString
		if err := tx.QueryRowContext(ctx, it.GTIDQuery).Scan(&gtid); err != nil {
			return 0, nil, fmt.Errorf("read the source's GTID position after the rows of %s: %w", t, err)
		}
		b.SourceGTID = gtid.String
	}
	if err := sink(ctx, b); err != nil {
		return 0, nil, retry.Permanent(err)
	}
	// The locks are released only now, after the rows are committed on the target.
	return len(batch), toKey(last), tx.Commit()
}

// planRanges splits a table's key space into at most n ranges of similar size (PlanKeyRanges).
func (it *SourceDataIterator) planRanges(ctx context.Context, t *TableCopy, n int) ([]*KeyRange, error) {
	size := it.batchSize()
	return PlanKeyRanges(ctx, it.DB, t.Source, t.EstimatedRows, n, int64(4*size))
}

// PlanKeyRanges splits a table's key space into at most n ranges of similar size; a table of fewer
// than minRows (estimated) rows is one range. A single integer key is split arithmetically between
// MIN and MAX; any other key by walking the key index with OFFSET, so every boundary is a real key
// in the server's own order. The ranges cover the whole key space whatever the table holds when
// they are read: the first is open below, the last open above.
func PlanKeyRanges(ctx context.Context, db *sql.DB, table *schema.Table, estimatedRows int64, n int, minRows int64) ([]*KeyRange, error) {
	if n <= 1 || estimatedRows < minRows {
		return []*KeyRange{{}}, nil
	}
	keyCols := table.KeyColumns()
	if len(keyCols) == 1 && isIntegerType(keyCols[0].DataType) {
		k := schema.QuoteIdent(keyCols[0].Name)
		var lo, hi sql.NullString
		if err := db.QueryRowContext(ctx, "SELECT MIN("+k+"), MAX("+k+") FROM "+table.QualifiedName()).Scan(&lo, &hi); err != nil {
			return nil, fmt.Errorf("plan ranges of %s: %w", table, err)
		}
		if !lo.Valid {
			return []*KeyRange{{}}, nil
		}
		a, _ := new(big.Int).SetString(lo.String, 10)
		b, _ := new(big.Int).SetString(hi.String, 10)
		span := new(big.Int).Sub(b, a)
		if span.Cmp(big.NewInt(int64(n))) < 0 {
			return []*KeyRange{{}}, nil
		}
		var out []*KeyRange
		var prev Key
		for i := 1; i < n; i++ {
			step := new(big.Int).Mul(span, big.NewInt(int64(i)))
			step.Div(step, big.NewInt(int64(n)))
			bound := Key{[]byte(new(big.Int).Add(a, step).String())}
			out = append(out, &KeyRange{Start: prev, End: bound})
			prev = bound
		}
		return append(out, &KeyRange{Start: prev}), nil
	}
	step := estimatedRows / int64(n)
	var out []*KeyRange
	var prev Key
	cols := make([]string, len(keyCols))
	for i, c := range keyCols {
		cols[i] = schema.QuoteIdent(c.Name)
	}
	for i := 1; i < n; i++ {
		q := "SELECT " + strings.Join(cols, ", ") + " FROM " + table.QualifiedName() + " FORCE INDEX (" + quoteIndex(table.KeyName) + ")"
		var args []any
		if prev != nil {
			vals, err := schema.KeyArgs(keyCols, prev)
			if err != nil {
				return nil, err
			}
			c, a := schema.KeyCompare(keyCols, vals, ">", false)
			q += " WHERE " + c
			args = a
		}
		q += " " + orderByKey(keyCols) + " LIMIT 1 OFFSET " + strconv.FormatInt(step, 10)
		vals := make([]any, len(keyCols))
		ptrs := make([]any, len(keyCols))
		for j := range vals {
			ptrs[j] = &vals[j]
		}
		err := db.QueryRowContext(ctx, q, args...).Scan(ptrs...)
		if err == sql.ErrNoRows {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("plan ranges of %s: %w", table, err)
		}
		bound := toKey(vals)
		out = append(out, &KeyRange{Start: prev, End: bound})
		prev = bound
	}
	return append(out, &KeyRange{Start: prev}), nil
}

func isIntegerType(t string) bool {
	switch t {
	case "tinyint", "smallint", "mediumint", "int", "integer", "bigint":
		return true
	}
	return false
}

func quoteIndex(name string) string {
	if name == "PRIMARY" {
		return "PRIMARY"
	}
	return schema.QuoteIdent(name)
}

// copyOrder moves every table after the tables it must be copied after, keeping the given order
// otherwise.
func copyOrder(tables []*TableCopy) []*TableCopy {
	var out []*TableCopy
	placed := map[*TableCopy]bool{}
	in := map[*TableCopy]bool{}
	for _, t := range tables {
		in[t] = true
	}
	var place func(t *TableCopy, depth int)
	place = func(t *TableCopy, depth int) {
		if placed[t] || depth > len(tables) {
			return
		}
		for _, dep := range t.copyAfter {
			if in[dep] {
				place(dep, depth+1)
			}
		}
		if !placed[t] {
			placed[t] = true
			out = append(out, t)
		}
	}
	for _, t := range tables {
		place(t, 0)
	}
	return out
}

// waitGroupCtx waits for wg or ctx.
func waitGroupCtx(ctx context.Context, wg *sync.WaitGroup) error {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
