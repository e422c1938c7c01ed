package verifier

import (
	"context"
	"crypto/md5"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/ferrykit/ferry/schema"
	"github.com/ferrykit/ferry/throttler"
)

// Inline verifies a copy from what the copy itself saw, without a second scan of the source.
//
// As rows are copied (RowsCopied) it keeps, per row, its key and a 16-byte MD5 fingerprint of the
// values the copy read; as the binlog changes rows afterwards (RowChanged) it remembers their keys.
//
//   - Verify(BeforeCutover) scans the target once, in key pages, having the target server compute each
//     row's fingerprint in the same form (only FLOAT/DOUBLE values cross the wire, because the server's
//     own text of a double differs from the protocol's). Every target row whose fingerprint differs
//     from the copied one, that was never copied, or that lies outside the copy filter (Strict), every
//     copied row the target no longer has, and every key the binlog touched, is a candidate; only the
//     candidates are read on the source, by key, and compared column by column on both sides. So the
//     source is read in proportion to the rows changed since they were copied, not to the table.
//     Differences still present after Rechecks re-reads (RecheckDelay apart) are reported and kept.
//   - Verify(DuringCutover), after a BeforeCutover pass, reads on both sides only the keys the binlog
//     touched (or the copy wrote) since that pass started, plus the keys that differed then: its cost
//     is proportional to the rows changed, not to the table size. Without a previous pass it runs the
//     full pass.
//
// Guarantee: every row the copy wrote and every row the binlog touched is proven equal on both sides
// (or reported), and every target row is accounted for. A source row the copy never read and the binlog
// never touched is invisible to it (it has no fingerprint and the source is not scanned): pair it
// with Checksum when that must be proven too.
//
// The copy must read rows as the verifiers do, with character_set_results=binary (stored bytes) and
// time_zone '+00:00' — as ferry's copy does. Rows copied with another convention are not wrong,
// only re-read on the source at the BeforeCutover pass.
//
// Memory: per copied row, its key (a string: the key's bytes plus a length prefix and a 16-byte
// header), a 16-byte fingerprint, a 4-byte pass counter and the map's own overhead — 80 to 115 bytes
// for an INT key depending on how full the map is (BenchmarkRowsCopied), so 1M rows take about
// 100 MB; longer keys add their length. Each distinct key touched by the binlog costs about as much
// until the next pass. Fingerprinting costs about 0.7 µs per 8-column row, without allocations
// (BenchmarkFingerprint).
// RowsCopied and RowChanged are safe for concurrent use (copy workers run in parallel), also with a
// running Verify; Verify itself must not run concurrently with another Verify of the same table.
type Inline struct {
	Source, Target *sql.DB
	// SampleSize caps the keys kept per category and table; default DefaultSampleSize.
	SampleSize int
	// Strict: see Checksum.Strict.
	Strict bool
	// PageSize is the number of target rows per page of the BeforeCutover scan; default 2000.
	PageSize int
	// BatchSize is the number of keys re-read per query; default 200.
	BatchSize int
	// Rechecks and RecheckDelay: keys that differ in the BeforeCutover pass are read again up to
	// Rechecks times (default 2), RecheckDelay apart (default 200ms).
	Rechecks     int
	RecheckDelay time.Duration
	// Throttler, if set, is waited on before each page and batch.
	Throttler throttler.Throttler
	// MaxRetries bounds the attempts at one page or batch on transient errors (lost connections, a
	// server restart, deadlocks); default 10. Logger receives the retries; default logrus's
	// standard logger.
	MaxRetries int
	Logger     logrus.FieldLogger

	mu     sync.Mutex
	tables map[string]*inlineTable
	stats  stats
}

type inlineEntry struct {
	fp   [16]byte
	seen uint32 // the pass that last saw this row on the target
}

type inlineTable struct {
	mu      sync.Mutex
	cols    []*schema.Column // writable columns, in the order the copy passes values
	forms   []form
	key     []keyCol
	keyPos  []int // index in cols of each key column
	rows    map[string]inlineEntry
	touched map[string]keyVal // since the current pass started
	pending map[string]keyVal // differed at the last pass
	epoch   uint32            // passes started
	base    int64             // rows compared by the last full pass
	err     error
}

// Stats reports the work done so far.
func (v *Inline) Stats() Stats { return v.stats.snapshot() }

func (v *Inline) state(t *schema.Table) *inlineTable {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.tables == nil {
		v.tables = map[string]*inlineTable{}
	}
	name := t.String()
	if st := v.tables[name]; st != nil {
		return st
	}
	st := &inlineTable{rows: map[string]inlineEntry{}, touched: map[string]keyVal{}, pending: map[string]keyVal{}}
	st.cols = t.WritableColumns()
	st.forms = forms(st.cols)
	for _, kc := range t.KeyColumns() {
		k, err := newKeyCol(kc)
		if err != nil && st.err == nil {
			st.err = fmt.Errorf("verifier: inline: %s: %w", t, err)
		}
		st.key = append(st.key, k)
		p := -1
		for i, c := range st.cols {
			if c.Name == kc.Name {
				p = i
			}
		}
		if p < 0 && st.err == nil {
			st.err = fmt.Errorf("verifier: inline: %s: key column %s is generated", t, kc.Name)
		}
		st.keyPos = append(st.keyPos, p)
	}
	v.tables[name] = st
	return st
}

// form is how a copied value enters its row's fingerprint.
type form uint8

const (
	formShort  form = iota // length-prefixed bytes, in the target's hash
	formHashed             // MD5, in the target's hash
	formFloat              // length-prefixed text, added in Go (see fingerprint)
)

func forms(cols []*schema.Column) []form {
	out := make([]form, len(cols))
	for i, c := range cols {
		switch {
		case c.DataType == "float" || c.DataType == "double" || c.DataType == "real":
			out[i] = formFloat
		case shortColumn(c):
			out[i] = formShort
		default:
			out[i] = formHashed
		}
	}
	return out
}

// RowsCopied implements CopyObserver: it fingerprints each row.
func (v *Inline) RowsCopied(table *schema.Table, rows [][]any) {
	st := v.state(table)
	if st.err != nil {
		return
	}
	type item struct {
		id  string
		key keyVal
		fp  [16]byte
	}
	items := make([]item, 0, len(rows))
	for _, r := range rows {
		if len(r) != len(st.cols) {
			st.fail(fmt.Errorf("verifier: inline: %s: copied row has %d values, want %d", table, len(r), len(st.cols)))
			return
		}
		k := make(keyVal, len(st.key))
		for i, kc := range st.key {
			b, err := kc.canonical(r[st.keyPos[i]])
			if err != nil {
				st.fail(fmt.Errorf("verifier: inline: %s: %w", table, err))
				return
			}
			k[i] = b
		}
		items = append(items, item{k.id(), k, fingerprint(st.forms, r)})
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, it := range items {
		st.rows[it.id] = inlineEntry{fp: it.fp}
		if st.epoch > 0 { // copied after a pass began: check it at the next one
			st.touched[it.id] = it.key
		}
	}
}

// RowChanged implements BinlogObserver: it remembers the key for the next pass. Key values are
// taken as the binlog reader gives them (integers, strings or bytes as stored; BINARY(N) values
// without their trailing zero bytes are padded back).
func (v *Inline) RowChanged(table *schema.Table, key []any) {
	st := v.state(table)
	if st.err != nil {
		return
	}
	if len(key) != len(st.key) {
		st.fail(fmt.Errorf("verifier: inline: %s: changed key has %d values, want %d", table, len(key), len(st.key)))
		return
	}
	k, err := canonicalKey(st.key, key)
	if err != nil {
		st.fail(fmt.Errorf("verifier: inline: %s: %w", table, err))
		return
	}
	id := k.id()
	st.mu.Lock()
	st.touched[id] = k
	st.mu.Unlock()
}

func (st *inlineTable) fail(err error) {
	st.mu.Lock()
	if st.err == nil {
		st.err = err
	}
	st.mu.Unlock()
}

// Verify implements Verifier.
func (v *Inline) Verify(ctx context.Context, phase Phase, tables []TablePair) (*Result, error) {
	start := time.Now()
	res := &Result{Verifier: "inline", Phase: phase, Scope: CopiedRows, CannotSee: withFilterBlindSpot(inlineCannotSee, tables, v.Strict)}
	for _, p := range tables {
		pl, err := newPlan(ctx, newRetrier(v.MaxRetries, v.Logger), v.Target, p, v.Strict)
		if err != nil {
			return nil, err
		}
		st := v.state(p.Source)
		st.mu.Lock()
		err = st.err
		full := phase == BeforeCutover || st.epoch == 0
		st.mu.Unlock()
		if !full {
			res.Scope = ChangedRows
		}
		if err != nil {
			return nil, err
		}
		tr, err := v.verifyTable(ctx, phase, pl, st, full)
		if err != nil {
			return nil, err
		}
		res.Tables = append(res.Tables, tr)
	}
	res.Duration = time.Since(start)
	return res, nil
}

const inlineCannotSee = "source rows the copy never read and the binlog never changed (a row a faulty copy filter skipped), " +
	"and changes that never reach the binlog (foreign-key cascades, sql_log_bin=0 sessions on the source, triggers or other writers on the target) made after a row was copied"

func (v *Inline) verifyTable(ctx context.Context, phase Phase, pl *plan, st *inlineTable, full bool) (_ *TableResult, err error) {
	r := newRetrier(v.MaxRetries, v.Logger)
	src, tgt := newConn(v.Source, &v.stats.s), newConn(v.Target, &v.stats.t)
	defer src.release()
	defer tgt.release()

	st.mu.Lock()
	check := st.touched
	for id, k := range st.pending {
		check[id] = k
	}
	st.touched, st.pending = map[string]keyVal{}, map[string]keyVal{}
	st.epoch++
	epoch := st.epoch
	st.mu.Unlock()
	defer func() {
		if err != nil { // the keys taken for this pass are checked at the next one
			st.mu.Lock()
			for id, k := range check {
				st.touched[id] = k
			}
			st.mu.Unlock()
		}
	}()

	var compared int64
	candFP := map[string][16]byte{}
	if full {
		n, err := v.scanTarget(ctx, r, tgt, pl, st, epoch, check, candFP)
		if err != nil {
			return nil, err
		}
		compared = n
		st.mu.Lock()
		for id, e := range st.rows {
			if e.seen != epoch {
				check[id] = keyFromID(id)
			}
		}
		st.mu.Unlock()
	}
	capN := sampleSize(v.SampleSize)
	d, differing, err := v.recheck(ctx, r, src, tgt, pl, check, capN)
	if err != nil {
		return nil, err
	}
	for attempt := 0; len(differing) > 0 && phase == BeforeCutover && attempt < rechecks(v.Rechecks); attempt++ {
		if err := sleep(ctx, recheckDelay(v.RecheckDelay)); err != nil {
			return nil, err
		}
		var again map[string]keyVal
		if d, again, err = v.recheck(ctx, r, src, tgt, pl, differing, capN); err != nil {
			return nil, err
		}
		differing = again
	}
	st.mu.Lock()
	for id, k := range differing {
		st.pending[id] = k
	}
	if full {
		// Keep the fingerprints current so the next full pass does not re-read these rows: a
		// candidate now equal on both sides takes the target's fingerprint; one on neither side
		// (deleted since it was copied) is forgotten.
		for id := range check {
			if _, ok := differing[id]; ok {
				continue
			}
			if fp, ok := candFP[id]; ok {
				st.rows[id] = inlineEntry{fp: fp, seen: epoch}
			} else if e, ok := st.rows[id]; ok && e.seen != epoch {
				delete(st.rows, id)
			}
		}
	}
	if full {
		st.base = compared
	} else {
		compared = int64(len(check))
	}
	base := st.base
	st.mu.Unlock()
	smp := &samples{cap: capN}
	smp.add(d, 0)
	tr := pl.newResult()
	smp.fill(tr)
	tr.RowsCompared = compared
	if !full {
		tr.BaseRowsCompared = base
	}
	if err := pl.checkCompared(ctx, r, src, tr); err != nil {
		return nil, err
	}
	return tr, nil
}

// scanTarget reads the whole target (key + server-computed fingerprint) and adds to check every row
// whose fingerprint does not match the copied one (and its target fingerprint to candFP). It returns
// the number of target rows read.
func (v *Inline) scanTarget(ctx context.Context, r retrier, tgtC *conn, pl *plan, st *inlineTable, epoch uint32, check map[string]keyVal, candFP map[string][16]byte) (int64, error) {
	size := v.PageSize
	if size <= 0 {
		size = 2000
	}
	// The target computes the copy's fingerprint: MD5 over the non-float columns' tokens, then the
	// float columns' text, combined in Go exactly as fingerprint does.
	var tokens, floats []string
	for i, c := range st.cols {
		tc := pl.tgt.Column(c.Name)
		q := schema.QuoteIdent(c.Name)
		e := q
		if tc != nil && tc.Charset != "" {
			e = "CAST(" + q + " AS BINARY)"
		}
		switch {
		case st.forms[i] == formFloat && tc != nil && tc.DataType == "float":
			floats = append(floats, "CAST("+q+" AS DOUBLE)")
		case st.forms[i] == formFloat && tc != nil:
			floats = append(floats, q)
		case st.forms[i] == formFloat:
			floats = append(floats, "NULL")
		case tc == nil:
			tokens = append(tokens, "'-'") // column gone on the target: never matches, rows are re-read
		default:
			tokens = append(tokens, tokenSQL(e, st.forms[i] == formShort))
		}
	}
	vals := rowHash(tokens)
	for _, f := range floats {
		vals += ", " + f
	}
	inFilter := ""
	if pl.pair.Where != "" && pl.t.where == "" {
		inFilter = ", IFNULL((" + pl.pair.Where + "), 0) <> 0"
	}
	nk := len(pl.key)
	var n int64
	var lo keyVal
	for {
		if err := throttler.Wait(ctx, v.Throttler, nil); err != nil {
			return n, err
		}
		var c cond
		if err := pl.rangeCond(&c, lo, nil); err != nil {
			return n, err
		}
		pl.t.filter(&c)
		q := "SELECT " + pl.keySelect() + ", " + vals + inFilter + " FROM " + pl.t.table + pl.t.index +
			" WHERE " + c.String() + pl.orderBy() + " LIMIT " + strconv.Itoa(size)
		type seen struct {
			id  string
			key keyVal
			fp  [16]byte
			ok  bool // inside the filter
		}
		var page []seen
		err := r.do(ctx, "scan "+pl.t.table, func() error {
			page = nil
			tgt, err := tgtC.get(ctx)
			if err != nil {
				return err
			}
			if err := pl.t.fitsPacket(tgt); err != nil {
				return err
			}
			rows, err := tgt.query(ctx, q, c.args...)
			if err != nil {
				return fmt.Errorf("verifier: inline: scan %s: %w", pl.t.table, err)
			}
			defer rows.Close()
			raw := make([]sql.RawBytes, nk+1+len(floats)+boolInt(inFilter != ""))
			ptrs := make([]any, len(raw))
			for i := range raw {
				ptrs[i] = &raw[i]
			}
			for rows.Next() {
				if err := rows.Scan(ptrs...); err != nil {
					return fmt.Errorf("verifier: inline: scan %s: %w", pl.t.table, err)
				}
				k := make(keyVal, nk)
				for i := range k {
					k[i] = append([]byte{}, raw[i]...)
				}
				fv := make([]any, len(floats))
				for i := range floats {
					if b := raw[nk+1+i]; b != nil {
						fv[i] = []byte(b)
					}
				}
				s := seen{id: k.id(), key: k, fp: combine(raw[nk], fv), ok: true}
				if inFilter != "" {
					s.ok = string(raw[len(raw)-1]) == "1"
				}
				page = append(page, s)
			}
			if err := rows.Err(); err != nil {
				return fmt.Errorf("verifier: inline: scan %s: %w", pl.t.table, err)
			}
			return nil
		}, tgtC)
		if err != nil {
			return n, err
		}
		v.stats.t.rows.Add(int64(len(page)))
		n += int64(len(page))
		st.mu.Lock()
		for _, s := range page {
			e, ok := st.rows[s.id]
			if ok {
				e.seen = epoch
				st.rows[s.id] = e
			}
			if !ok || e.fp != s.fp || !s.ok {
				check[s.id] = s.key
				candFP[s.id] = s.fp
			}
		}
		st.mu.Unlock()
		if len(page) < size {
			return n, nil
		}
		lo = page[len(page)-1].key
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// recheck reads the given keys on both sides and compares them column by column. It returns what
// differs and the keys that still differ.
func (v *Inline) recheck(ctx context.Context, r retrier, src, tgt *conn, pl *plan, keys map[string]keyVal, capN int) (*rangeDiff, map[string]keyVal, error) {
	return pl.compareKeys(ctx, r, src, tgt, keys, v.BatchSize, v.Throttler, capN)
}

// keyFromID decodes keyVal.id.
func keyFromID(id string) keyVal {
	var k keyVal
	b := []byte(id)
	for len(b) > 0 {
		n, w := binary.Uvarint(b)
		b = b[w:]
		k = append(k, append([]byte{}, b[:n]...))
		b = b[n:]
	}
	return k
}

// ---- fingerprints ----

// fingerprint is the MD5 of a copied row. Each value becomes a token as tokenSQL makes it on the
// server: "N" for NULL, else its length, ':' and its bytes (short types) or the hex MD5 of its bytes
// (long types). The tokens of the non-float columns are hashed together (the target server computes
// that hash itself, MD5(CONCAT(token, ...))); the row's fingerprint is the MD5 of that hash's hex
// followed by the float columns' tokens, whose text (the protocol's, not the server's CAST AS CHAR)
// only Go can reproduce.
func fingerprint(forms []form, row []any) [16]byte {
	var stack [1024]byte
	buf := stack[:0]
	for i, v := range row {
		if forms[i] != formFloat {
			buf = appendToken(buf, v, forms[i] == formShort)
		}
	}
	inner := md5.Sum(buf)
	buf = hex.AppendEncode(stack[:0], inner[:])
	for i, v := range row {
		if forms[i] == formFloat {
			buf = appendToken(buf, v, true)
		}
	}
	return md5.Sum(buf)
}

// combine computes a fingerprint from the target's inner hash (hex) and float values.
func combine(innerHex []byte, floats []any) [16]byte {
	var stack [512]byte
	buf := append(stack[:0], innerHex...)
	for _, v := range floats {
		buf = appendToken(buf, v, true)
	}
	return md5.Sum(buf)
}

func appendToken(buf []byte, v any, short bool) []byte {
	var b []byte
	var tmp [64]byte
	switch x := v.(type) {
	case nil:
		return append(buf, 'N')
	case []byte:
		b = x
	case string:
		if short {
			buf = strconv.AppendInt(buf, int64(len(x)), 10)
			return append(append(buf, ':'), x...)
		}
		sum := md5.Sum([]byte(x))
		return hex.AppendEncode(buf, sum[:])
	default:
		b = appendText(tmp[:0], v)
	}
	if short {
		buf = strconv.AppendInt(buf, int64(len(b)), 10)
		return append(append(buf, ':'), b...)
	}
	sum := md5.Sum(b)
	return hex.AppendEncode(buf, sum[:])
}

// appendText renders a non-byte value the way the server's text protocol would.
func appendText(b []byte, v any) []byte {
	switch x := v.(type) {
	case int64:
		return strconv.AppendInt(b, x, 10)
	case int:
		return strconv.AppendInt(b, int64(x), 10)
	case int32:
		return strconv.AppendInt(b, int64(x), 10)
	case uint64:
		return strconv.AppendUint(b, x, 10)
	case uint32:
		return strconv.AppendUint(b, uint64(x), 10)
	case float64:
		return strconv.AppendFloat(b, x, 'g', -1, 64)
	case float32:
		return strconv.AppendFloat(b, float64(x), 'g', -1, 64)
	case bool:
		if x {
			return append(b, '1')
		}
		return append(b, '0')
	case time.Time:
		return x.UTC().AppendFormat(b, "2006-01-02 15:04:05.999999")
	case sql.RawBytes:
		return append(b, x...)
	case fmt.Stringer:
		return append(b, x.String()...)
	}
	return append(b, strings.TrimSpace(fmt.Sprint(v))...)
}
